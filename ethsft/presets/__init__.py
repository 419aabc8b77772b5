"""The shipped presets: links to the checkout's configs/, launch/ and deepspeed/, copied into the wheel."""
