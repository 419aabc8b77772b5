"""`ethsft presets`: the configs, launch files and DeepSpeed JSONs the package ships, and where they are installed,
so that a launch line works from any folder: accelerate launch --config_file "$(ethsft presets --path zero2.yaml)" ..."""

from __future__ import annotations

import click


@click.command("presets")
@click.option("--path", "name", metavar="NAME",
              help="Print only the installed path of one shipped file: a config (tiny_cpu, 12gb), a launch file "
                   "(zero2.yaml) or a DeepSpeed JSON (zero2.json).")
def main(name):
    """List the shipped configs (ethsft train --config NAME), accelerate launch files and DeepSpeed JSONs
    (--deepspeed NAME), each with a one-line summary from its header comment."""
    from ethsft.config import presets

    if name is not None:
        found = presets.find_anywhere(name)
        if not found:
            raise click.UsageError(f"--path {name}: no shipped file of that name (`ethsft presets` lists them)")
        if len(found) > 1:
            raise click.UsageError(f"--path {name}: names several shipped files, say which: "
                                   + ", ".join(f"{p.parent.name}/{p.name}" for p in found))
        click.echo(found[0])
        return
    headings = {"configs": "Configs (ethsft train --config NAME)",
                "launch": 'Launch files (accelerate launch --config_file "$(ethsft presets --path NAME)")',
                "deepspeed": "DeepSpeed JSONs (ethsft train --deepspeed NAME, or its path: ethsft presets --path NAME)"}
    entries = presets.catalogue()
    width = max(len(e.name) for e in entries)
    for i, (kind, heading) in enumerate(headings.items()):
        click.echo(("\n" if i else "") + f"{heading}, in {presets.shipped(kind)[0].parent}:")
        for e in (e for e in entries if e.kind == kind):
            click.echo(f"  {e.name:<{width}}  {e.summary}")
