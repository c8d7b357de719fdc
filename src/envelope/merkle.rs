//! The log as an RFC 9162 Merkle tree (Certificate Transparency v2, §2.1): hashes, the
//! frontier that grows with the log, the nodes an inclusion or a consistency proof needs, and
//! the verification of both. Pure: where nodes are kept is the store's business; here a proof
//! is planned as a list of complete subtrees ([`NodeId`]) that a store looks up.
//!
//! Definitions (SHA-256): `MTH({}) = SHA-256()`; a leaf's hash is `SHA-256(0x00 ‖ d)`; a node's
//! `SHA-256(0x01 ‖ left ‖ right)`; a tree of n > 1 leaves splits at k, the largest power of two
//! below n. Leaf `i` (0-based) is the event at position `i + 1`; its input `d` is that event's
//! 32-byte chain hash (raw bytes, not hex).

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// `MTH({})`: the root of the empty tree, `SHA-256()`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// A leaf's hash: `SHA-256(0x00 ‖ d)`.
pub fn leaf_hash(d: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(d);
    h.finalize().into()
}

/// An inner node's hash: `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// A complete subtree: the `2^level` leaves from `index << level` on. Level 0 is a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// Height above the leaves.
    pub level: u32,
    /// Position among the subtrees of that level, from 0.
    pub index: u64,
}

impl NodeId {
    /// The first leaf it covers.
    pub fn first_leaf(&self) -> u64 {
        self.index << self.level
    }
}

/// The complete subtrees that make up leaves `[start, end)`, left to right, largest first. For
/// the ranges of RFC 9162's recursion (`start` a multiple of a power of two at least
/// `end - start`), folding their hashes from the right gives the range's `MTH`.
pub fn decompose(mut start: u64, end: u64) -> Vec<NodeId> {
    let mut out = Vec::new();
    while start < end {
        let mut level = if start == 0 {
            63
        } else {
            start.trailing_zeros()
        };
        while level > 0 && (1u64 << level) > end - start {
            level -= 1;
        }
        out.push(NodeId {
            level,
            index: start >> level,
        });
        start += 1 << level;
    }
    out
}

/// Folds the hashes of [`decompose`]'s subtrees into the range's `MTH`: `H(a, H(b, … H(y, z)))`.
pub fn fold(hashes: &[Hash]) -> Hash {
    let mut it = hashes.iter().rev();
    let Some(last) = it.next() else {
        return empty_root();
    };
    it.fold(*last, |acc, left| node_hash(left, &acc))
}

/// The largest power of two strictly below `n` (n > 1).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The subtrees whose hashes make a tree's root (one range to fold).
pub fn root_plan(size: u64) -> Vec<NodeId> {
    decompose(0, size)
}

/// RFC 9162 §2.1.3.1 `PATH(m, D[n])`: each element of the audit path, leaf to root, as the
/// subtrees to fold into it. Needs `index < size`.
pub fn inclusion_plan(index: u64, size: u64) -> Vec<Vec<NodeId>> {
    let (mut lo, mut hi) = (0u64, size);
    let mut top_down = Vec::new();
    while hi - lo > 1 {
        let k = split(hi - lo);
        if index < lo + k {
            top_down.push(decompose(lo + k, hi));
            hi = lo + k;
        } else {
            top_down.push(decompose(lo, lo + k));
            lo += k;
        }
    }
    top_down.reverse();
    top_down
}

/// RFC 9162 §2.1.4.1 `PROOF(m, D[n])`: the consistency path from a tree of `first` leaves to
/// one of `second`, as the subtrees to fold into each element. Needs `0 < first <= second`.
pub fn consistency_plan(first: u64, second: u64) -> Vec<Vec<NodeId>> {
    let (mut lo, mut hi, mut m, mut whole) = (0u64, second, first, true);
    let mut top_down = Vec::new();
    loop {
        if m == hi - lo {
            if !whole {
                top_down.push(decompose(lo, hi));
            }
            break;
        }
        let k = split(hi - lo);
        if m <= k {
            top_down.push(decompose(lo + k, hi));
            hi = lo + k;
        } else {
            top_down.push(decompose(lo, lo + k));
            lo += k;
            m -= k;
            whole = false;
        }
    }
    top_down.reverse();
    top_down
}

/// Every subtree a plan names, once, in order (what to ask a store for).
pub fn plan_nodes(plan: &[Vec<NodeId>]) -> Vec<NodeId> {
    let mut all: Vec<NodeId> = plan.iter().flatten().copied().collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// The proof a plan describes, given the hashes of [`plan_nodes`] (in that order).
pub fn assemble(plan: &[Vec<NodeId>], nodes: &[NodeId], hashes: &[Hash]) -> Vec<Hash> {
    let of = |id: &NodeId| hashes[nodes.binary_search(id).expect("the plan's node")];
    plan.iter()
        .map(|range| fold(&range.iter().map(of).collect::<Vec<_>>()))
        .collect()
}

/// RFC 9162 §2.1.3.2: does `path` prove that `leaf` is leaf `index` of the tree of `size`
/// leaves whose root is `root`?
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, path: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s, mut r) = (index, size - 1, *leaf);
    for p in path {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// RFC 9162 §2.1.4.2: does `path` prove that the tree of `second` leaves with root
/// `second_root` extends the tree of `first` leaves with root `first_root`? Equal sizes need
/// an empty path and equal roots; a first size of 0 proves nothing and is refused.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    path: &[Hash],
) -> bool {
    if first == 0 || first > second {
        return false;
    }
    if first == second {
        return path.is_empty() && first_root == second_root;
    }
    let mut path: Vec<Hash> = path.to_vec();
    if first.is_power_of_two() {
        path.insert(0, *first_root);
    }
    let Some((start, rest)) = path.split_first() else {
        return false;
    };
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*start, *start);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *first_root && sr == *second_root && s == 0
}

/// The right edge of a growing tree: the roots of its complete subtrees, largest first (one
/// per bit set in its size). Appending a leaf completes the nodes it closes, which a store
/// keeps; the root of the whole tree folds the edge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    roots: Vec<Hash>,
}

impl Frontier {
    /// The empty tree's.
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// The frontier of a tree of `size` leaves, from the hashes of `root_plan(size)`.
    pub fn from_roots(size: u64, roots: Vec<Hash>) -> Option<Frontier> {
        (roots.len() == size.count_ones() as usize).then_some(Frontier { size, roots })
    }

    /// Leaves so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf (its input `d`, the event's chain hash); `completed` is called with
    /// every inner node (level ≥ 1) the leaf completes, lowest first.
    pub fn push(&mut self, d: &Hash, completed: impl FnMut(NodeId, Hash)) {
        self.push_leaf_hash(leaf_hash(d), completed)
    }

    /// `push` given the leaf's hash rather than its input.
    pub fn push_leaf_hash(&mut self, leaf: Hash, mut completed: impl FnMut(NodeId, Hash)) {
        let mut h = leaf;
        let mut index = self.size;
        let mut level = 0;
        while index & 1 == 1 {
            let left = self.roots.pop().expect("one root per set bit");
            h = node_hash(&left, &h);
            index >>= 1;
            level += 1;
            completed(NodeId { level, index }, h);
        }
        self.roots.push(h);
        self.size += 1;
    }

    /// The tree's root, `MTH` of every leaf so far.
    pub fn root(&self) -> Hash {
        fold(&self.roots)
    }
}

/// A proof from its plan, the hashes of the plan's subtrees looked up at once (`lookup` is
/// given [`plan_nodes`] and answers in that order).
pub fn prove<E>(
    plan: &[Vec<NodeId>],
    lookup: impl FnOnce(&[NodeId]) -> Result<Vec<Hash>, E>,
) -> Result<Vec<Hash>, E> {
    let ids = plan_nodes(plan);
    let hashes = lookup(&ids)?;
    Ok(assemble(plan, &ids, &hashes))
}

/// The root of the tree of `size` leaves, its subtrees looked up at once.
pub fn root_of<E>(
    size: u64,
    lookup: impl FnOnce(&[NodeId]) -> Result<Vec<Hash>, E>,
) -> Result<Hash, E> {
    Ok(fold(&lookup(&root_plan(size))?))
}

/// A tree held whole in memory, every complete subtree's hash level by level (64 bytes per
/// leaf): the JetStream store's, rebuilt when it opens.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    frontier: Frontier,
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// Appends a leaf (its input `d`).
    pub fn push(&mut self, d: &Hash) {
        let leaf = leaf_hash(d);
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        self.levels[0].push(leaf);
        let levels = &mut self.levels;
        self.frontier.push_leaf_hash(leaf, |id, h| {
            if levels.len() <= id.level as usize {
                levels.push(Vec::new());
            }
            levels[id.level as usize].push(h);
        });
    }

    /// Leaves so far.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// A complete subtree's hash, if the tree has it.
    pub fn node(&self, id: NodeId) -> Option<Hash> {
        self.levels
            .get(id.level as usize)
            .and_then(|l| l.get(usize::try_from(id.index).ok()?))
            .copied()
    }

    /// The root of every leaf so far.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }
}

#[cfg(test)]
#[path = "merkle_tests.rs"]
mod tests;
