"""Training unit HiFi-GAN vocoders on the units of a semantic tokenizer (``slmtok vocoder train``)."""
