"""__NAME__: a federated PyTorch MLP with fedzero."""
