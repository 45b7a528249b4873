"""fedzero.node."""

__all__: list[str] = []
