"""__NAME__: federated linear regression with fedzero and NumPy."""
