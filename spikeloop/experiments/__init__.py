"""The paper's experiments on the emulated chip."""
