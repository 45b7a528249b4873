"""fedzero + PyTorch: federated training of a small CNN on handwritten digits."""
