"""The latent space of a library: principal directions, random variants, nearest shapes and
evenly paced paths."""
