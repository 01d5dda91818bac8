"""Models: the encoder (image to long caption), the decoder (caption to image) and the connector between them.

`factory` loads them (a folder, a hub name or "tiny"); `painting.paint` is the one encode-then-paint loop.
"""
