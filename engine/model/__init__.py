"""The MSFM network: backbones, FMA, the three stages and their composition."""
