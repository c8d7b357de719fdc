#!/usr/bin/env python3
"""Verify a campaign-ledger export, proof or test-vector file with the Python standard library
only: nothing of the ledger's own code is used, only the definitions in the README's "What
exactly is hashed" section.

    python3 examples/verify.py export FILE [--digest DIGEST] [--public-key HEX]
    python3 examples/verify.py proof FILE [--public-key HEX]
    python3 examples/verify.py vectors schemas/test-vectors.json

`export` recomputes the hash chain of an export (from `campaign-ledger export`) and, with a
digest, checks its signature, that the export holds the event the digest names, and that the
Merkle tree of the export's first `tree_size` events has the digest's root. `proof` checks an
inclusion proof, a consistency proof or a person's record (from `campaign-ledger audit prove`,
`audit consistency`, or the HTTP API). Exit 0: it holds; 1: it does not (the line says what
failed); 2: the file is not what was expected.
"""

import hashlib
import json
import sys

# ---------------------------------------------------------------------------------------------
# Ed25519 verification (RFC 8032, section 6: the reference algorithm).

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_I = pow(2, (_P - 1) // 4, _P)


def _recover_x(y, sign):
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P)
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P != 0:
        x = x * _I % _P
    if (x * x - x2) % _P != 0:
        return None
    if (x & 1) != sign:
        x = _P - x
    return x


def _add(p, q):
    a = (p[1] - p[0]) * (q[1] - q[0]) % _P
    b = (p[1] + p[0]) * (q[1] + q[0]) % _P
    c = 2 * p[3] * q[3] * _D % _P
    d = 2 * p[2] * q[2] % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(s, p):
    q = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            q = _add(q, p)
        p = _add(p, p)
        s >>= 1
    return q


def _equal(p, q):
    return (p[0] * q[2] - q[0] * p[2]) % _P == 0 and (p[1] * q[2] - q[1] * p[2]) % _P == 0


_GY = 4 * pow(5, _P - 2, _P) % _P
_GX = _recover_x(_GY, 0)
_G = (_GX, _GY, 1, _GX * _GY % _P)


def _decompress(s):
    if len(s) != 32:
        return None
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    return None if x is None else (x, y, 1, x * y % _P)


def ed25519_verify(public, message, signature):
    if len(public) != 32 or len(signature) != 64:
        return False
    a = _decompress(public)
    r = _decompress(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= _L:
        return False
    h = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % _L
    return _equal(_mul(s, _G), _add(r, _mul(h, a)))


# ---------------------------------------------------------------------------------------------
# The hash chain.


class Failed(Exception):
    """The thing checked does not hold."""


class Unreadable(Exception):
    """Not a file of the expected kind."""


def event_of(line):
    """The envelope of an export line, and the bytes of its `data` member as they appear (the
    last member of the line: what the chain hashes)."""
    line = line.rstrip("\r\n")
    try:
        e = json.loads(line)
    except ValueError as err:
        raise Unreadable(f"not an export line ({err})")
    i = line.find(',"data":')
    if i < 0 or not line.endswith("}"):
        raise Unreadable("an export line ends with its data member")
    e["_data"] = line[i + len(',"data":') : -1]
    return e


def chain_hash(prev, e):
    """SHA-256(prev_hash ‖ F(position) ‖ F(event id) ‖ … ‖ F(data)), F(x) = 4-byte big-endian
    length of x's UTF-8 bytes, then the bytes."""
    h = hashlib.sha256(prev)
    for x in [
        str(e["ledgerposition"]),
        e["id"],
        e["subject"],
        str(e["ledgerstreamversion"]),
        e["ledgereventtype"],
        str(e["ledgerschemaversion"]),
        e["time"],
        e["ledgerrecordedat"],
        e["ledgercommandid"],
        e.get("ledgercorrelationid") or "",
        e["ledgeractor"],
        e["_data"],
    ]:
        b = x.encode("utf-8")
        h.update(len(b).to_bytes(4, "big") + b)
    return h.digest()


def check_event(e):
    """The event's stored hash is the hash of its content; returns it."""
    h = bytes.fromhex(e["ledgerhash"])
    if chain_hash(bytes.fromhex(e["ledgerprevhash"]), e) != h:
        raise Failed(f"the event at position {e['ledgerposition']}: its hash is not the hash of its content")
    return h


# ---------------------------------------------------------------------------------------------
# The Merkle tree (RFC 9162, section 2.1).


def leaf_hash(d):
    return hashlib.sha256(b"\x00" + d).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(leaves):
    """MTH of a list of leaf hashes."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def verify_inclusion(index, size, leaf, path, root):
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first, second, first_root, second_root, path):
    if first == 0 or first > second:
        return False
    if first == second:
        return not path and first_root == second_root
    if first & (first - 1) == 0:
        path = [first_root] + list(path)
    if not path:
        return False
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0


# ---------------------------------------------------------------------------------------------
# Signed digests.

_SIGNED = ["format", "store", "position", "hash", "recorded_at", "signed_at"]
_SIGNED_IF_PRESENT = ["ledger", "tree_size", "root_hash", "access_log_size", "access_log_hash"]


def check_digest(d, trusted):
    """The digest's signature (against `trusted`, else the key it names); returns its tree."""
    if d.get("format") != "campaign-ledger-digest/1":
        raise Unreadable(f"not a digest of this ledger (format {d.get('format')!r})")
    if "signature" not in d or "public_key" not in d:
        raise Failed("the digest is not signed")
    key = trusted or d["public_key"]
    if key.lower() != d["public_key"].lower():
        raise Failed(f"the digest was signed by key {d['public_key']}, not by the trusted key {key}")
    signed = {k: d.get(k) for k in _SIGNED}
    signed.update({k: d[k] for k in _SIGNED_IF_PRESENT if k in d})
    message = json.dumps(signed, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if not ed25519_verify(bytes.fromhex(key), message, bytes.fromhex(d["signature"])):
        raise Failed("the signature does not match the digest: the document was changed after it was signed")
    if "tree_size" not in d or "root_hash" not in d:
        raise Failed("the digest has no tree_size and root_hash (taken before the Merkle tree)")
    return d["tree_size"], bytes.fromhex(d["root_hash"])


def check_proved(p, size, root):
    e = event_of(p["event"])
    h = check_event(e)
    at = e["ledgerposition"]
    if leaf_hash(h).hex() != p["leaf_hash"] or p["leaf_index"] + 1 != at:
        raise Failed(f"the event at position {at}: leaf_hash or leaf_index is not its own")
    path = [bytes.fromhex(x) for x in p["audit_path"]]
    if not verify_inclusion(p["leaf_index"], size, leaf_hash(h), path, root):
        raise Failed(f"the audit path of the event at position {at} does not lead to the digest's root")
    return at


def check_proof(doc, trusted):
    fmt = doc.get("format")
    if fmt == "campaign-ledger-inclusion-proof/1":
        size, root = check_digest(doc["digest"], trusted)
        if size != doc["tree_size"]:
            raise Failed(f"the proof is for a tree of {doc['tree_size']} events, the digest states {size}")
        at = check_proved(doc, size, root)
        return [f"ok: the event at position {at} is in the tree of {size} events the digest signs"]
    if fmt == "campaign-ledger-consistency-proof/1":
        first, first_root = check_digest(doc["from"], trusted)
        second, second_root = check_digest(doc["to"], trusted)
        if doc["from"].get("ledger") != doc["to"].get("ledger"):
            raise Failed("the two digests are of different ledgers")
        if (first, second) != (doc["first"], doc["second"]):
            raise Failed("the proof's sizes are not the digests'")
        path = [bytes.fromhex(x) for x in doc["consistency_path"]]
        if not verify_consistency(first, second, first_root, second_root, path):
            raise Failed(f"the tree of {second} events does not extend the tree of {first}")
        return [f"ok: the tree of {second} events extends the tree of {first}"]
    if fmt == "campaign-ledger-person-proof/1":
        size, root = check_digest(doc["digest"], trusted)
        if size != doc["tree_size"]:
            raise Failed("the record's tree size is not the digest's")
        ats = [check_proved(p, size, root) for p in doc["events"]]
        return [f"ok: {len(ats)} events of person {doc['person']} (positions {ats}) are in the tree of {size} events"]
    raise Unreadable(f"format {fmt!r} is not a proof of this ledger")


def check_export(path, digest, trusted):
    leaves, prev, first, out = [], None, None, []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            e = event_of(line)
            if first is None:
                first = e["ledgerposition"]
            elif e["ledgerposition"] != first + len(leaves):
                raise Failed(f"line {number}: position {e['ledgerposition']} does not follow")
            if prev is not None and bytes.fromhex(e["ledgerprevhash"]) != prev:
                raise Failed(f"the chain breaks at position {e['ledgerposition']}: prev_hash is not the hash before it")
            if first == 1 and prev is None and e["ledgerprevhash"] != "00" * 32:
                raise Failed("the first event's prev_hash is not 32 zero bytes")
            prev = check_event(e)
            leaves.append(leaf_hash(prev))
    if first is None:
        raise Unreadable("the export holds no event")
    last = first + len(leaves) - 1
    out.append(f"ok: positions {first}..{last}, chain intact; head {last} {prev.hex()}")
    if digest is not None:
        size, root = check_digest(digest, trusted)
        if first != 1 or size > last:
            raise Failed(f"the digest's tree of {size} events is not inside this export ({first}..{last})")
        if leaves and mth(leaves[:size]) != root:
            raise Failed(f"the Merkle root of the first {size} events is not the digest's: the log was changed")
        out.append(f"ok: the first {size} events have the digest's Merkle root, signed by {digest['public_key']}")
    return out


def check_vectors(path):
    v = json.load(open(path, encoding="utf-8"))
    prev, leaves = b"\x00" * 32, []
    for i, line in enumerate(v["events"]):
        e = event_of(line)
        if bytes.fromhex(e["ledgerprevhash"]) != prev or v["chain"][i]["prev_hash"] != prev.hex():
            raise Failed(f"vector {i}: prev_hash")
        prev = check_event(e)
        if v["chain"][i]["hash"] != prev.hex() or v["leaf_hashes"][i] != leaf_hash(prev).hex():
            raise Failed(f"vector {i}: hash or leaf hash")
        leaves.append(leaf_hash(prev))
        if mth(leaves).hex() != v["roots"][str(i + 1)]:
            raise Failed(f"vector {i}: root of size {i + 1}")
    roots = {int(k): bytes.fromhex(r) for k, r in v["roots"].items()}
    if mth([]).hex() != v["empty_root"]:
        raise Failed("the empty root")
    for p in v["inclusion"]:
        path_ = [bytes.fromhex(x) for x in p["audit_path"]]
        i, n = p["leaf_index"], p["tree_size"]
        if not verify_inclusion(i, n, leaves[i], path_, roots[n]):
            raise Failed(f"inclusion of leaf {i} in {n}")
    for p in v["consistency"]:
        path_ = [bytes.fromhex(x) for x in p["consistency_path"]]
        m, n = p["first"], p["second"]
        if not verify_consistency(m, n, roots[m], roots[n], path_):
            raise Failed(f"consistency {m} -> {n}")
    key = v["test_public_key"]
    size, root = check_digest(v["digest"], key)
    if root != roots[size]:
        raise Failed("the digest's root")
    out = [f"ok: {len(leaves)} events, their chain, leaves, roots and paths, and the signed digest"]
    out += check_proof(v["inclusion_proof"], key) + check_proof(v["consistency_proof"], key)
    return out


def main(argv):
    args, opts = [], {}
    it = iter(argv[1:])
    for a in it:
        if a in ("--digest", "--public-key"):
            opts[a] = next(it, None)
        else:
            args.append(a)
    if len(args) != 2 or args[0] not in ("export", "proof", "vectors") or None in opts.values():
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    what, path = args
    trusted = opts.get("--public-key")
    try:
        if what == "vectors":
            lines = check_vectors(path)
        elif what == "proof":
            lines = check_proof(json.load(open(path, encoding="utf-8")), trusted)
        else:
            digest = json.load(open(opts["--digest"], encoding="utf-8")) if "--digest" in opts else None
            lines = check_export(path, digest, trusted)
    except Failed as e:
        print(f"FAILED: {e}")
        return 1
    except (Unreadable, KeyError, ValueError, OSError) as e:
        print(f"error: {path}: {e!r}" if isinstance(e, KeyError) else f"error: {path}: {e}", file=sys.stderr)
        return 2
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
