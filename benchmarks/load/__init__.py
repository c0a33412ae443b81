"""`shopcall bench`: the operator load tool (command line in benchmarks/cli.py).

plan (options, the consultations and staff they make), media_source (pre-encoded replay),
receiver_stats (per-stream accounting, pure), rtp_probe (the aiortc receiver hooks),
media_peer (one WebRTC participant), signalling (WebSocket client), scenario (one
consultation, simulated staff), worker (a generator process), server (the server under
test, its setup and metrics), stats / capacity / report (pure logic), plots (PNG),
progress (the live line), runner (all of it together).
"""
