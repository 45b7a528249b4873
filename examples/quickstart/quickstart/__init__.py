"""fedzero quickstart: federated softmax regression on handwritten digits."""
