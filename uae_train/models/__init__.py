"""Models: the encoder (image to long caption), the decoder (caption to image) and the connector between them."""
