#!/usr/bin/env python3
"""A downstream consumer of the ledger's events in Python, with nats-py (pip install nats-py).

The common case, not a full replay: a durable JetStream consumer on LEDGER_EVENTS for one
directorate (subject ledger.v1.events.<directorate>.>, or every directorate with _all). It
resumes after a crash where it stopped: each event is processed, then the state file (last
position and hash, counts) is replaced atomically, then the message is acknowledged. A crash
between the two redelivers a message already processed, which is recognised by its
ledgerposition (not above the state's) and skipped. Each event's hash is recomputed from the
CloudEvent alone (examples/verify.py, the README's "What exactly is hashed"); reading every
directorate, each link to the previous event is checked too.

    python3 examples/consumer.py lyon --durable lyon-dashboard --state lyon.json \\
        [--nats nats://127.0.0.1:4222] [--idle-exit 2] [--ack-wait 30] [--exit-before-ack-after N]

Exit 0: stopped (idle, Ctrl-C); 1: an event failed verification; 2: usage or NATS error;
3: the simulated crash (--exit-before-ack-after).
"""

import argparse
import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import verify  # noqa: E402  (the same directory: the hash definitions)

STREAM = "LEDGER_EVENTS"
PREFIX = "ledger.v1.events"


def load_state(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return {"position": 0, "hash": "", "counts": {}, "skipped": 0}


def save_state(path, state):
    """Write, fsync, rename: a crash leaves the old state or the new one."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


async def run(args):
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    state = load_state(args.state)
    try:
        nc = await nats.connect(args.nats, connect_timeout=3, max_reconnect_attempts=3)
    except Exception as e:  # nats-py raises several kinds
        print(f"error: cannot reach NATS at {args.nats} ({e})", file=sys.stderr)
        return 2
    js = nc.jetstream()
    subject = f"{PREFIX}.>" if args.directorate == "_all" else f"{PREFIX}.{args.directorate}.>"
    config = ConsumerConfig(
        durable_name=args.durable,
        filter_subject=subject,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=args.ack_wait,
    )
    try:
        sub = await js.pull_subscribe(subject, durable=args.durable, stream=STREAM, config=config)
    except Exception as e:
        print(f"error: cannot create the durable consumer on {STREAM} ({e}); run the relay first", file=sys.stderr)
        await nc.close()
        return 2
    processed = sum(state["counts"].values())
    print(f"durable consumer {args.durable!r} reading {subject}; resuming after position {state['position']} ({processed} events processed so far)", flush=True)
    this_run, quiet = 0, 0.0
    while True:
        try:
            batch = await sub.fetch(100, timeout=1)
        except nats.errors.TimeoutError:
            quiet += 1
            if args.idle_exit is not None and quiet >= args.idle_exit:
                break
            continue
        quiet = 0.0
        for msg in batch:
            e = verify.event_of(msg.data.decode("utf-8"))
            position = e["ledgerposition"]
            if position <= state["position"]:
                # Processed before a crash that came before its acknowledgement: skip it.
                state["skipped"] += 1
                save_state(args.state, state)
                await msg.ack()
                continue
            try:
                verify.check_event(e)
            except verify.Failed as err:
                print(f"error: position {position}: {err}", file=sys.stderr)
                await nc.close()
                return 1
            if args.directorate == "_all" and state["position"] > 0:
                if e["ledgerprevhash"] != state["hash"] or position != state["position"] + 1:
                    print(f"error: the chain breaks before position {position}", file=sys.stderr)
                    await nc.close()
                    return 1
            # The processing of the event goes here (a dashboard's counts: by type).
            t = e["ledgereventtype"]
            state["counts"][t] = state["counts"].get(t, 0) + 1
            state["position"], state["hash"] = position, e["ledgerhash"]
            save_state(args.state, state)
            this_run += 1
            if args.exit_before_ack_after is not None and this_run >= args.exit_before_ack_after:
                print(f"exiting before acknowledging position {position} (a simulated crash)", flush=True)
                os._exit(3)
            await msg.ack()
    await nc.close()
    processed = sum(state["counts"].values())
    print(f"{processed} events processed and verified, up to position {state['position']} ({this_run} this run, {state['skipped']} redelivered and skipped):")
    for t in sorted(state["counts"]):
        print(f"  {t:<24} {state['counts'][t]}")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("directorate", help="a directorate id (lyon, paris, …) or _all")
    p.add_argument("--nats", default=os.environ.get("LEDGER_NATS", "nats://127.0.0.1:4222"))
    p.add_argument("--durable", required=True, help="the durable consumer's name (the server remembers what was acknowledged)")
    p.add_argument("--state", required=True, help="the state file (what was processed)")
    p.add_argument("--idle-exit", type=float, help="stop after this many seconds without news")
    p.add_argument("--ack-wait", type=float, default=30.0, help="seconds before an unacknowledged message is redelivered")
    p.add_argument("--exit-before-ack-after", type=int, help="simulate a crash after processing N events")
    args = p.parse_args()
    try:
        import nats  # noqa: F401
    except ImportError:
        print("error: nats-py is not installed: pip install nats-py", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
