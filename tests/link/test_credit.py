"""The credit window and the pending table, as plain objects."""

from __future__ import annotations

from fedzero.link.routing import CreditRequest, CreditWindow, Pending, PendingTable


def _req(i: int, run: int = 1, nbytes: int = 10, node: int | None = None) -> CreditRequest:
    return CreditRequest(f"m{i}", node if node is not None else i, run, nbytes)


def test_window_bounds_uploads_and_bytes() -> None:
    w = CreditWindow(max_uploads=2, max_bytes=25)
    assert w.request(_req(1)) == [_req(1)]
    assert w.request(_req(2)) == [_req(2)]
    assert w.request(_req(3)) == []  # two in flight
    assert w.release("m1") == [_req(3)]
    assert w.request(_req(4, nbytes=10)) == []  # 20 + 10 bytes > 25
    assert w.in_flight == 2
    assert w.waiting == 1
    assert w.high_water == 2


def test_an_upload_larger_than_the_window_is_admitted_alone() -> None:
    w = CreditWindow(max_uploads=4, max_bytes=100)
    assert w.request(_req(1, nbytes=10)) == [_req(1, nbytes=10)]
    assert w.request(_req(2, nbytes=1000)) == []
    assert w.release("m1") == [_req(2, nbytes=1000)]


def test_round_robin_across_runs() -> None:
    w = CreditWindow(max_uploads=1, max_bytes=10**9)
    w.request(_req(0, run=1))
    for i in range(1, 4):
        w.request(_req(i, run=1))
    w.request(_req(10, run=2))
    order = []
    for key in ["m0", "m1", "m10", "m2"]:
        granted = w.release(key)
        order += [g.reply_to for g in granted]
    assert order == ["m1", "m10", "m2", "m3"]


def test_drop_node_and_run_free_their_credit() -> None:
    w = CreditWindow(max_uploads=1, max_bytes=10**9)
    w.request(_req(1, node=7))
    w.request(_req(2, node=8, run=2))
    assert w.drop_node(7) == [_req(2, node=8, run=2)]
    assert w.drop_run(2) == []
    assert w.in_flight == 0
    assert w.bytes_in_flight == 0


def test_pending_table_expiry_and_indexes() -> None:
    t = PendingTable()
    for i, expires in enumerate([5.0, 1.0, 3.0]):
        entry = Pending(
            f"m{i}",
            run_id=1 + i % 2,
            node_id=i % 2,
            app_routing_id=b"a",
            message_type="train",
            group_id="",
            expires_at=expires,
        )
        t.add(entry)
    assert t.next_expiry() == 1.0
    assert [e.message_id for e in t.pop_expired(3.0)] == ["m1", "m2"]
    assert [e.message_id for e in t.pop_node(0)] == ["m0"]
    assert len(t) == 0
    assert t.next_expiry() is None
