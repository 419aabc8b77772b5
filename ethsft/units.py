"""Units shared by memory figures: one definition, imported wherever bytes become GiB."""

GiB = 2**30
