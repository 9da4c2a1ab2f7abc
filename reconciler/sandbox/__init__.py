"""The sandbox: an emulator of the Fleet Owner Web API (v3) with simulated vehicles, served on loopback."""
