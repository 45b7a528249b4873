import time, numpy as np, torch
from fedzero.core import ArrayRecord, Message, RecordDict, decode, encode


def best(fn, n=7):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


for mb in (1, 25, 100):
    layers = 10
    per = mb * 2**20 // 4 // layers
    sd = {f"l{i}": torch.randn(per) for i in range(layers)}
    raw = [t.numpy() for t in sd.values()]
    floor = best(lambda: [a.copy() for a in raw])
    snap = best(lambda: ArrayRecord(sd))
    zero = best(lambda: ArrayRecord(sd, copy=False))
    msg = Message(RecordDict({"arrays": ArrayRecord(sd, copy=False)}), 1, "train")
    frames = encode(msg)
    rec = decode(frames).content["arrays"]
    tonp = best(lambda: rec.to_numpy_ndarrays())
    tonp0 = best(lambda: rec.to_numpy_ndarrays(copy=False))
    tosd = best(lambda: rec.to_torch_state_dict())
    tosd0 = best(lambda: rec.to_torch_state_dict(copy=False))
    model = torch.nn.Module()
    enc = best(lambda: encode(msg))
    print(f"{mb:>4} MB: memcpy floor (a.copy() of each array) {floor * 1e3:7.2f} ms")
    print(
        f"{mb:>4} MB: ArrayRecord(state_dict) snapshot {snap * 1e3:7.2f} ms | copy=False {zero * 1e3:6.3f} ms | "
        f"received to_numpy_ndarrays() {tonp * 1e3:7.2f} ms | copy=False {tonp0 * 1e3:6.3f} ms | "
        f"to_torch_state_dict() {tosd * 1e3:7.2f} ms | copy=False {tosd0 * 1e3:6.3f} ms | encode {enc * 1e3:6.3f} ms"
    )
