"""funduslab: transfer learning on retinal fundus photographs."""

__all__ = ["__version__"]
__version__ = "0.1.0"
