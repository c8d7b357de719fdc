#!/usr/bin/env python3
"""Verify a campaign-ledger export, proof, checkpoint or test-vector file with the Python
standard library only: nothing of the ledger's own code is used, only the definitions in the
README's "What exactly is hashed" section and the C2SP signed-note, tlog-checkpoint and
tlog-cosignature specifications. It checks what `campaign-ledger audit` checks, and
`schemas/verifier-cases.json` holds the cases both must agree on.

    python3 examples/verify.py export FILE [--digest CHECKPOINT] TRUST
    python3 examples/verify.py proof FILE [--trusted CHECKPOINT] TRUST
    python3 examples/verify.py checkpoint FILE TRUST
    python3 examples/verify.py vectors schemas/test-vectors.json
    python3 examples/verify.py cases schemas/verifier-cases.json
    TRUST: --keys FILE | --public-key KEY, [--witness-keys FILE] [--quorum K]

`export` recomputes the hash chain of an export (from `campaign-ledger export`: positions,
links, hashes, the attributes derived from the envelope, commit times that never go back) and,
with a checkpoint or digest, checks it against the keys you trust, that the export holds the
event it names (a window must contain its position), that the Merkle tree of the export's first
events has its root when the export starts at 1, and that nothing after a witnessed checkpoint
was recorded more than 5 s before its witnessed time. `proof` checks an inclusion proof, a
consistency proof or a person's record; with --trusted, against your own checkpoint's tree.
Keys are verifier keys (`audit public-key`, `witness keygen`), or 64 hex digits; a key set
file holds one a line, optionally followed by its validity window (RFC 3339 or -). Without a
witness, a checkpoint is accepted only with --quorum 0. Exit 0: it holds; 1: it does not (the
line says what failed); 2: the input is not what was expected.
"""

import base64
import datetime
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


class Broken(Failed):
    """The chain breaks at a position."""

    def __init__(self, position, reason):
        super().__init__(reason)
        self.position = position


def check_event(e):
    """The attributes derived from the envelope are what it gives, and the event's stored hash
    is the hash of its content; returns the hash."""
    at = e["ledgerposition"]
    derived = {
        "specversion": "1.0",
        "type": f"fr.ofii.campaign-ledger.{e['ledgereventtype']}.v{e['ledgerschemaversion']}",
        "datacontenttype": "application/json",
    }
    for k, v in derived.items():
        if e.get(k) != v:
            raise Broken(at, f"{k} is {e.get(k)!r}, but this event's envelope makes it {v!r}: the line was changed")
    h = bytes.fromhex(e["ledgerhash"])
    if chain_hash(bytes.fromhex(e["ledgerprevhash"]), e) != h:
        raise Broken(at, f"the event at position {at}: its hash is not the hash of its content")
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
# Signed notes, checkpoints, cosignatures (C2SP signed-note, tlog-checkpoint, tlog-cosignature).

DASH = "\u2014 "
TYPE_ED25519, TYPE_COSIGNATURE = 1, 4
SLACK = 5  # seconds an event after a witnessed checkpoint may say it was recorded before it


def key_id(name, sig_type, public):
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public).digest()[:4]


def parse_note(text):
    """(note text, [(name, key id, signature bytes)]): the text is up to the last blank line."""
    if any(c != "\n" and (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0) for c in text):
        raise Failed("the note holds a control character")
    if not text.endswith("\n") or "\n\n" not in text:
        raise Failed("not a signed note (text, blank line, signature lines)")
    split = text.rfind("\n\n")
    body, sigs = text[: split + 1], []
    for line in text[split + 2 :].splitlines():
        if not line.startswith(DASH) or " " not in line[len(DASH) :]:
            raise Failed(f"{line!r} is not a signature line")
        name, b64 = line[len(DASH) :].split(" ", 1)
        raw = base64.b64decode(b64, validate=True)
        if len(raw) < 5:
            raise Failed(f"the signature of {name} is too short")
        sigs.append((name, raw[:4], raw[4:]))
    if not sigs:
        raise Failed("the note has no signature")
    return body, sigs


def parse_checkpoint(body):
    lines = body[:-1].split("\n")
    if len(lines) < 3 or not lines[0]:
        raise Failed("a checkpoint is an origin, a tree size and a root hash")
    if not lines[1].isdigit() or str(int(lines[1])) != lines[1]:
        raise Failed(f"the tree size {lines[1]!r} is not a decimal number")
    root = base64.b64decode(lines[2], validate=True)
    if len(root) != 32 or any(not x for x in lines[3:]):
        raise Failed("the checkpoint's root or an extension line is malformed")
    ext = dict(x.split(" ", 1) for x in lines[3:] if " " in x)
    return {"origin": lines[0], "size": int(lines[1]), "root": root, "ext": ext}


def parse_key(text):
    """A verifier key `name+id+base64(type ‖ key)`, or 64 hex digits (trusted under any name):
    (name or None, type, 32-byte key)."""
    t = text.strip()
    if len(t) == 64 and "+" not in t:
        if _decompress(bytes.fromhex(t)) is None:
            raise Unreadable(f"{t!r} is not an Ed25519 key")
        return None, TYPE_ED25519, bytes.fromhex(t)
    parts = t.split("+", 2)
    if len(parts) != 3 or len(parts[1]) != 8:
        raise Unreadable(f"{t!r} is neither a verifier key (name+id+key) nor 64 hex digits")
    name, kid, raw = parts[0], bytes.fromhex(parts[1]), base64.b64decode(parts[2], validate=True)
    if len(raw) != 33 or raw[0] not in (TYPE_ED25519, TYPE_COSIGNATURE):
        raise Unreadable(f"the key of {name} is not an Ed25519 key (type 0x01) or cosigner (0x04)")
    if _decompress(raw[1:]) is None:
        raise Unreadable(f"the key of {name} is not an Ed25519 key")
    if key_id(name, raw[0], raw[1:]) != kid:
        raise Unreadable(f"the key id of {name} does not match its key: the line was changed")
    return name, raw[0], raw[1:]


def _time(t):
    return None if t in (None, "-") else datetime.datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()


def parse_key_set(text):
    keys = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            name, t, k = parse_key(words[0])
            keys.append({"name": name, "type": t, "key": k,
                         "from": _time(words[1] if len(words) > 1 else None),
                         "until": _time(words[2] if len(words) > 2 else None)})
    return keys


def check_checkpoint(note, trust):
    """The checkpoint signed by a trusted key named as its origin, cosigned by `quorum` trusted
    witnesses; returns (checkpoint, witnessed time or None)."""
    body, sigs = parse_note(note)
    cp = parse_checkpoint(body)
    cosigned = {}
    for w in (k for k in trust["witnesses"] if k["type"] == TYPE_COSIGNATURE):
        kid = key_id(w["name"], TYPE_COSIGNATURE, w["key"])
        for name, i, sig in sigs:
            if name == w["name"] and i == kid:
                ts = int.from_bytes(sig[:8], "big") if len(sig) == 72 else -1
                msg = f"cosignature/v1\ntime {ts}\n".encode() + body.encode()
                if ts < 0 or not ed25519_verify(w["key"], msg, sig[8:]):
                    raise Failed(f"the cosignature of witness {w['name']} does not verify")
                cosigned.setdefault(w["name"], ts)
    at = min(cosigned.values()) if cosigned else datetime.datetime.now(datetime.timezone.utc).timestamp()
    signed = known = False
    for k in (k for k in trust["keys"] if k["type"] == TYPE_ED25519):
        name = cp["origin"] if k["name"] is None else k["name"]
        if name != cp["origin"]:
            continue
        kid = key_id(name, TYPE_ED25519, k["key"])
        for n, i, sig in sigs:
            if n == name and i == kid:
                known = True
                if not ed25519_verify(k["key"], body.encode(), sig):
                    raise Failed(f"the signature of {name} does not verify: the checkpoint was changed after it was signed")
                if (k["from"] is None or at >= k["from"]) and (k["until"] is None or at <= k["until"]):
                    signed = True
    if not signed:
        raise Failed(f"the checkpoint of {cp['origin']} is signed by a trusted key outside its validity window"
                     if known else f"the checkpoint of {cp['origin']} is not signed by a key you trust")
    required = trust["quorum"] if trust["quorum"] is not None else len(
        [w for w in trust["witnesses"] if w["type"] == TYPE_COSIGNATURE])
    if not trust["witnesses"] and trust["quorum"] != 0:
        raise Failed(f"the checkpoint of {cp['origin']} is not checked against any witness: give --witness-keys, or accept it unwitnessed with --quorum 0")
    if len(cosigned) < required:
        raise Failed(f"the checkpoint of {cp['origin']} is cosigned by {len(cosigned)} of the witnesses you trust, and {required} are required")
    return cp, (min(cosigned.values()) if cosigned else None)


_SIGNED = ["format", "store", "position", "hash", "recorded_at", "signed_at"]
_SIGNED_IF_PRESENT = ["ledger", "tree_size", "root_hash", "access_log_size", "access_log_hash"]


def digest_of(text):
    """A digest (JSON) or a checkpoint (a signed note) from a file's text."""
    if text.lstrip().startswith("{"):
        return json.loads(text)
    _, cp = None, parse_checkpoint(parse_note(text)[0])
    acc = cp["ext"].get("access")
    d = {"format": "campaign-ledger-digest/2", "checkpoint": text, "position": cp["size"],
         "tree_size": cp["size"], "root_hash": cp["root"].hex(),
         "hash": cp["ext"].get("chain", "00" * 32), "ledger": cp["origin"].split("/", 1)[-1]}
    if acc:
        d["access_log_size"], d["access_log_hash"] = int(acc.split(" ")[0]), acc.split(" ")[1]
    return d


def check_digest(d, trust):
    """The digest against what the verifier trusts: (tree size, root, witnessed time)."""
    fmt = d.get("format")
    if fmt == "campaign-ledger-digest/2":
        if "checkpoint" not in d:
            raise Failed("the digest is not signed")
        cp, witnessed = check_checkpoint(d["checkpoint"], trust)
        if any(k in d for k in ("recorded_at", "signed_at", "store")):
            raise Failed("the digest carries members its checkpoint does not sign: it was changed after it was signed")
        access = f"{d['access_log_size']} {d['access_log_hash']}" if "access_log_size" in d else None
        if (cp["size"] != d.get("position") or cp["size"] != d.get("tree_size")
                or cp["root"].hex() != d.get("root_hash") or "campaign-ledger/" + str(d.get("ledger")) != cp["origin"]
                or (cp["size"] > 0 and cp["ext"].get("chain") != d.get("hash")) or cp["ext"].get("access") != access):
            raise Failed("the digest is not what its signed checkpoint says: the document was changed after it was signed")
        return cp["size"], cp["root"], witnessed
    if fmt != "campaign-ledger-digest/1":
        raise Unreadable(f"not a digest of this ledger (format {fmt!r})")
    if "signature" not in d or "public_key" not in d:
        raise Failed("the digest is not signed")
    key = bytes.fromhex(d["public_key"])
    if not any(k["key"] == key and k["type"] == TYPE_ED25519 for k in trust["keys"]):
        raise Failed(f"the digest was signed by key {d['public_key']}, which is not among the keys you trust")
    if trust["quorum"] != 0:
        raise Failed("this digest is of the first format: it was never witnessed; accept it unwitnessed with --quorum 0")
    signed = {k: d.get(k) for k in _SIGNED}
    signed.update({k: d[k] for k in _SIGNED_IF_PRESENT if k in d})
    message = json.dumps(signed, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if not ed25519_verify(key, message, bytes.fromhex(d["signature"])):
        raise Failed("the signature does not match the digest: the document was changed after it was signed")
    if "tree_size" not in d or "root_hash" not in d:
        raise Failed("the digest has no tree_size and root_hash (taken before the Merkle tree)")
    return d["tree_size"], bytes.fromhex(d["root_hash"]), None


def not_backdated(e, after, witnessed):
    if witnessed is None or e["ledgerposition"] <= after:
        return
    t = _time(e["ledgerrecordedat"])
    if t + SLACK < witnessed:
        raise Broken(e["ledgerposition"], f"it says it was recorded at {e['ledgerrecordedat']}, more than {SLACK} s before the checkpoint of position {after} was witnessed, which it follows: it was backdated")


# ---------------------------------------------------------------------------------------------
# Proofs and exports.


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


def pin(size, root, pinned):
    if pinned is None:
        return
    if pinned[0] != size:
        raise Failed(f"the proof states a tree of {size} events and your trusted checkpoint one of {pinned[0]}: ask for the proof at your size")
    if pinned[1] != root:
        raise Failed(f"the proof's tree of {size} events has another root than your trusted checkpoint: the ledger showed you two histories (a fork)")


def check_proof(doc, trust, pinned=None):
    fmt = doc.get("format")
    if fmt == "campaign-ledger-inclusion-proof/1":
        size, root, _ = check_digest(doc["digest"], trust)
        if size != doc["tree_size"]:
            raise Failed(f"the proof is for a tree of {doc['tree_size']} events, the digest states {size}")
        pin(size, root, pinned)
        at = check_proved(doc, size, root)
        return [f"ok: the event at position {at} is in the tree of {size} events the digest signs"]
    if fmt == "campaign-ledger-consistency-proof/1":
        first, first_root, _ = check_digest(doc["from"], trust)
        second, second_root, _ = check_digest(doc["to"], trust)
        if doc["from"].get("ledger") != doc["to"].get("ledger"):
            raise Failed("the two digests are of different ledgers")
        if (first, second) != (doc["first"], doc["second"]):
            raise Failed("the proof's sizes are not the digests'")
        pin(first, first_root, pinned)
        path = [bytes.fromhex(x) for x in doc["consistency_path"]]
        if not verify_consistency(first, second, first_root, second_root, path):
            raise Failed(f"the tree of {second} events does not extend the tree of {first}")
        return [f"ok: the tree of {second} events extends the tree of {first}"]
    if fmt == "campaign-ledger-person-proof/1":
        size, root, _ = check_digest(doc["digest"], trust)
        if size != doc["tree_size"]:
            raise Failed("the record's tree size is not the digest's")
        pin(size, root, pinned)
        ats = [check_proved(p, size, root) for p in doc["events"]]
        return [f"ok: {len(ats)} events of person {doc['person']} (positions {ats}) are in the tree of {size} events"]
    raise Unreadable(f"format {fmt!r} is not a proof of this ledger")


def check_export(lines, digest, trust):
    """An export (a whole log, or a window) and, with a digest or checkpoint, the log it states."""
    leaves, prev, first, last_time, hashes = [], None, None, "", {}
    witnessed = size = root = None
    if digest is not None:
        size, root, witnessed = check_digest(digest, trust)
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        e = event_of(line)
        at = e["ledgerposition"]
        if first is None:
            first = at
            hashes[at - 1] = bytes.fromhex(e["ledgerprevhash"])
        elif at != first + len(leaves):
            raise Broken(first + len(leaves), f"line {number}: position {at} does not follow")
        if prev is not None and bytes.fromhex(e["ledgerprevhash"]) != prev:
            raise Broken(at, f"the chain breaks at position {at}: prev_hash is not the hash before it")
        if at == 1 and e["ledgerprevhash"] != "00" * 32:
            raise Broken(1, "the first event's prev_hash is not 32 zero bytes")
        if e["ledgerrecordedat"] < last_time:
            raise Broken(at, f"it was recorded at {e['ledgerrecordedat']}, before the event before it ({last_time}): commit times never go back")
        last_time = e["ledgerrecordedat"]
        prev = check_event(e)
        hashes[at] = prev
        if digest is not None:
            not_backdated(e, digest["position"], witnessed)
        leaves.append(leaf_hash(prev))
    if first is None:
        raise Unreadable("the export holds no event")
    last = first + len(leaves) - 1
    out = [f"ok: positions {first}..{last}, chain intact; head {last} {prev.hex()}"]
    if digest is not None:
        position = digest["position"]
        if first == 1 and digest.get("ledger") and hashes[1].hex() != digest["ledger"]:
            raise Broken(1, "the first event's hash is not the one the checkpoint's ledger began with: the log was rewritten from its first event (or the checkpoint is of another ledger)")
        if position not in hashes:
            raise Unreadable(f"the checkpoint's position {position} is not inside this export ({first}..{last})")
        if position > 0 and hashes[position].hex() != digest["hash"]:
            raise Broken(position, "the export's hash at the checkpoint's position is not the checkpoint's: this is not the log it states")
        if first == 1 and mth(leaves[:size]) != root:
            raise Broken(1, f"the Merkle root of the first {size} events is not the checkpoint's: the log was changed")
        out.append(f"ok: the export holds the log the checkpoint of position {position} states" +
                   (", witnessed" if witnessed is not None else ", unwitnessed"))
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
    trust = {"keys": [{"name": None, "type": TYPE_ED25519, "key": bytes.fromhex(v["test_public_key"]),
                       "from": None, "until": None}], "witnesses": [], "quorum": 0}
    pinned = {"keys": parse_key_set(v["test_verifier_key"]), "witnesses": [], "quorum": 0}
    cp, _ = check_checkpoint(v["checkpoint"], pinned)
    if cp["root"] != roots[cp["size"]] or cp["origin"] != "campaign-ledger/" + v["chain"][0]["hash"]:
        raise Failed("the checkpoint's root or origin")
    for name, t in (("digest", pinned), ("digest", trust), ("digest_v1", trust)):
        size, root, _ = check_digest(v[name], t)
        if root != roots[size]:
            raise Failed(f"the root of {name}")
    out = [f"ok: {len(leaves)} events, their chain, leaves, roots and paths, the signed checkpoint and digests"]
    out += check_proof(v["inclusion_proof"], trust) + check_proof(v["consistency_proof"], trust)
    return out


def trust_of(keys, witness_keys, quorum):
    trust = {"keys": parse_key_set(keys), "witnesses": parse_key_set(witness_keys or ""),
             "quorum": quorum}
    if not trust["keys"]:
        raise Unreadable("no trusted key: give the ledger's key (--keys FILE or --public-key KEY); the key a document names proves nothing by itself")
    return trust


def verdict(fn):
    """`ok`, `broken at N`, `failed`, or `error`, and the message."""
    try:
        return "ok", "\n".join(fn())
    except Broken as e:
        return f"broken at {e.position}", str(e)
    except Failed as e:
        return "failed", str(e)
    except (Unreadable, KeyError, ValueError) as e:
        return "error", repr(e)


def check_cases(path):
    """Every case of `schemas/verifier-cases.json`, against its expected verdict."""
    doc = json.load(open(path, encoding="utf-8"))
    out, wrong = [], []
    for case in doc["cases"]:
        t = case["trust"]
        trust = lambda: trust_of("\n".join(t["keys"]), "\n".join(t.get("witness_keys", [])), t.get("quorum"))
        f = case["files"]
        if case["check"] == "export":
            run = lambda: check_export(f["export"].splitlines(), digest_of(f["checkpoint"]) if "checkpoint" in f else None, trust())
        elif case["check"] == "proof":
            run = lambda: check_proof(json.loads(f["proof"]), trust(),
                                      (lambda d: (d["tree_size"], bytes.fromhex(d["root_hash"])))(digest_of(f["trusted"])) if "trusted" in f else None)
        else:
            run = lambda: [str(check_checkpoint(f["checkpoint"], trust())[0]["size"])]
        got, why = verdict(run)
        if got != case["expect"]:
            wrong.append(f"{case['name']}: expected {case['expect']}, got {got} ({why})")
        else:
            out.append(f"ok: {case['name']}: {got}")
    if wrong:
        raise Failed("; ".join(wrong))
    return out


def main(argv):
    args, opts = [], {}
    it = iter(argv[1:])
    for a in it:
        if a in ("--digest", "--public-key", "--keys", "--witness-keys", "--quorum", "--trusted"):
            opts[a] = next(it, None)
        else:
            args.append(a)
    if len(args) != 2 or args[0] not in ("export", "proof", "checkpoint", "vectors", "cases") or None in opts.values():
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    what, path = args
    try:
        if what == "vectors":
            lines = check_vectors(path)
        elif what == "cases":
            lines = check_cases(path)
        else:
            keys = open(opts["--keys"], encoding="utf-8").read() if "--keys" in opts else opts.get("--public-key", "")
            witnesses = open(opts["--witness-keys"], encoding="utf-8").read() if "--witness-keys" in opts else ""
            quorum = int(opts["--quorum"]) if "--quorum" in opts else None
            text = open(path, encoding="utf-8").read()
            # An export alone needs no key: only a checkpoint or a proof does.
            trust = trust_of(keys, witnesses, quorum) if (what != "export" or "--digest" in opts) else None
            if what == "checkpoint":
                cp, witnessed = check_checkpoint(text, trust)
                lines = [f"ok: checkpoint of {cp['origin']} at {cp['size']} events, " +
                         ("witnessed" if witnessed is not None else "unwitnessed (accepted with --quorum 0)")]
            elif what == "proof":
                pinned = None
                if "--trusted" in opts:
                    d = digest_of(open(opts["--trusted"], encoding="utf-8").read())
                    size, root, _ = check_digest(d, trust)
                    pinned = (size, root)
                lines = check_proof(json.loads(text), trust, pinned)
            else:
                digest = digest_of(open(opts["--digest"], encoding="utf-8").read()) if "--digest" in opts else None
                lines = check_export(text.splitlines(), digest, trust)
    except Broken as e:
        print(f"BROKEN at position {e.position}: {e}")
        return 1
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
