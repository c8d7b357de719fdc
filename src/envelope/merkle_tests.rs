//! The tree against RFC 6962 / RFC 9162's reference vectors (the Certificate Transparency
//! test tree of eight leaves), against the `ct-merkle` crate, and by property.

use super::*;
use proptest::prelude::*;
use std::collections::HashMap;

fn h(s: &str) -> Hash {
    hex::decode(s).unwrap().try_into().unwrap()
}

/// The CT reference leaves (their inputs; not 32-byte hashes, which the tree does not need).
const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// `MTH` of the first n reference leaves, n = 0..=8.
const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// A tree held whole in memory: every complete subtree's hash, from leaf hashes.
struct Tree {
    nodes: HashMap<NodeId, Hash>,
    size: u64,
}

impl Tree {
    fn of_leaf_hashes(leaves: &[Hash]) -> Tree {
        let mut nodes = HashMap::new();
        let mut level: Vec<Hash> = leaves.to_vec();
        let mut l = 0;
        while !level.is_empty() {
            for (i, x) in level.iter().enumerate() {
                nodes.insert(
                    NodeId {
                        level: l,
                        index: i as u64,
                    },
                    *x,
                );
            }
            level = level
                .chunks_exact(2)
                .map(|p| node_hash(&p[0], &p[1]))
                .collect();
            l += 1;
        }
        Tree {
            nodes,
            size: leaves.len() as u64,
        }
    }

    fn reference() -> Tree {
        let leaves: Vec<Hash> = LEAVES
            .iter()
            .map(|l| leaf_hash(&hex::decode(l).unwrap()))
            .collect();
        Tree::of_leaf_hashes(&leaves)
    }

    fn prove(&self, plan: &[Vec<NodeId>]) -> Vec<Hash> {
        let ids = plan_nodes(plan);
        let hashes: Vec<Hash> = ids.iter().map(|id| self.nodes[id]).collect();
        assemble(plan, &ids, &hashes)
    }

    fn root(&self, size: u64) -> Hash {
        let plan = root_plan(size);
        fold(&plan.iter().map(|id| self.nodes[id]).collect::<Vec<_>>())
    }
}

#[test]
fn roots_are_the_reference_tree_heads() {
    let t = Tree::reference();
    assert_eq!(empty_root(), h(ROOTS[0]));
    for (n, want) in ROOTS.iter().enumerate() {
        assert_eq!(hex::encode(t.root(n as u64)), *want, "size {n}");
    }
    assert_eq!(t.size, 8);
}

#[test]
fn inclusion_proofs_are_the_reference_paths() {
    let t = Tree::reference();
    // (leaf index, tree size, audit path), from the CT reference tests.
    let cases: [(u64, u64, &[&str]); 4] = [
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (index, size, want) in cases {
        let path = t.prove(&inclusion_plan(index, size));
        let got: Vec<String> = path.iter().map(hex::encode).collect();
        assert_eq!(got, want, "leaf {index} of {size}");
        let leaf = t.nodes[&NodeId { level: 0, index }];
        assert!(verify_inclusion(
            index,
            size,
            &leaf,
            &path,
            &h(ROOTS[size as usize])
        ));
        assert!(!verify_inclusion(index, size, &leaf, &path, &h(ROOTS[0])));
    }
}

#[test]
fn consistency_proofs_are_the_reference_paths() {
    let t = Tree::reference();
    let cases: [(u64, u64, &[&str]); 4] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (first, second, want) in cases {
        let path = t.prove(&consistency_plan(first, second));
        let got: Vec<String> = path.iter().map(hex::encode).collect();
        assert_eq!(got, want, "{first} → {second}");
        let (a, b) = (h(ROOTS[first as usize]), h(ROOTS[second as usize]));
        assert!(verify_consistency(first, second, &a, &b, &path));
        if first != second {
            assert!(!verify_consistency(first, second, &b, &a, &path));
        }
    }
}

#[test]
fn the_frontier_completes_the_stored_nodes_and_folds_to_the_root() {
    let inputs: Vec<Hash> = (0..37u8).map(|i| [i; 32]).collect();
    let leaves: Vec<Hash> = inputs.iter().map(|d| leaf_hash(d)).collect();
    let whole = Tree::of_leaf_hashes(&leaves);
    let mut f = Frontier::new();
    assert_eq!(f.root(), empty_root());
    let mut completed = HashMap::new();
    for (i, d) in inputs.iter().enumerate() {
        f.push(d, |id, hash| {
            assert!(completed.insert(id, hash).is_none(), "{id:?} twice");
        });
        let n = i as u64 + 1;
        assert_eq!(f.root(), whole.root(n), "size {n}");
        // A frontier rebuilt from the stored subtrees is the same.
        let again =
            Frontier::from_roots(n, root_plan(n).iter().map(|id| whole.nodes[id]).collect());
        assert_eq!(again.as_ref(), Some(&f));
    }
    // Every inner node was completed once, with the hash the whole tree has.
    let inner: Vec<_> = whole.nodes.iter().filter(|(id, _)| id.level > 0).collect();
    assert_eq!(inner.len(), completed.len());
    for (id, hash) in inner {
        assert_eq!(completed.get(id), Some(hash), "{id:?}");
    }
}

#[test]
fn the_same_roots_and_paths_as_the_ct_merkle_crate() {
    use ct_merkle::inclusion::InclusionProof;
    use ct_merkle::CtMerkleTree;
    let inputs: Vec<Hash> = (0..70u8).map(|i| [i.wrapping_mul(37); 32]).collect();
    let mut theirs = CtMerkleTree::<sha2::Sha256, Hash>::new();
    let mut leaves = Vec::new();
    for d in &inputs {
        theirs.push(*d);
        leaves.push(leaf_hash(d));
        let ours = Tree::of_leaf_hashes(&leaves);
        let n = leaves.len() as u64;
        assert_eq!(
            theirs.root().as_bytes().as_slice(),
            ours.root(n),
            "size {n}"
        );
        for i in 0..n {
            let path = ours.prove(&inclusion_plan(i, n));
            let bytes: Vec<u8> = path.concat();
            assert_eq!(
                theirs.prove_inclusion(i as usize).as_bytes(),
                bytes.as_slice()
            );
            let proof = InclusionProof::<sha2::Sha256>::from_bytes(bytes);
            assert!(theirs
                .root()
                .verify_inclusion(&inputs[i as usize], i as usize, &proof)
                .is_ok());
        }
    }
    // Consistency: the crate checks ours.
    let all = Tree::of_leaf_hashes(&leaves);
    for m in 1..=leaves.len() as u64 {
        let mut old = CtMerkleTree::<sha2::Sha256, Hash>::new();
        inputs[..m as usize].iter().for_each(|d| old.push(*d));
        let path = all.prove(&consistency_plan(m, leaves.len() as u64));
        let proof =
            ct_merkle::consistency::ConsistencyProof::<sha2::Sha256>::from_bytes(path.concat());
        assert!(
            theirs
                .root()
                .verify_consistency(&old.root(), &proof)
                .is_ok(),
            "{m} → {}",
            leaves.len()
        );
    }
}

/// Flips one bit of one of the proof's hashes.
fn flip(path: &mut [Hash], which: usize, bit: u8) {
    let n = path.len();
    path[which % n][(bit / 8) as usize % 32] ^= 1 << (bit % 8);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_inclusion_proof_verifies_and_any_change_fails(
        n in 1u64..300, i_seed in any::<u64>(), m_seed in any::<u64>(),
        which in any::<usize>(), bit in any::<u8>(),
    ) {
        let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let t = Tree::of_leaf_hashes(&leaves);
        let m = 1 + m_seed % n;
        let i = i_seed % m;
        let root = t.root(m);
        let leaf = leaves[i as usize];
        let mut path = t.prove(&inclusion_plan(i, m));
        prop_assert!(verify_inclusion(i, m, &leaf, &path, &root));
        // Another leaf, root, index or size fails.
        let mut other = leaf;
        other[(bit % 32) as usize] ^= 1;
        prop_assert!(!verify_inclusion(i, m, &other, &path, &root));
        let mut bad_root = root;
        bad_root[(bit % 32) as usize] ^= 0x80;
        prop_assert!(!verify_inclusion(i, m, &leaf, &path, &bad_root));
        // Another tree size, against that size's root (a root and its size are signed together:
        // RFC 9162 verification alone does not bind the size).
        if m < n {
            prop_assert!(!verify_inclusion(i, m + 1, &leaf, &path, &t.root(m + 1)));
        }
        if m > 1 {
            prop_assert!(!verify_inclusion((i + 1) % m, m, &leaf, &path, &root));
            flip(&mut path, which, bit);
            prop_assert!(!verify_inclusion(i, m, &leaf, &path, &root));
        }
    }

    #[test]
    fn every_consistency_proof_verifies_and_any_change_fails(
        n in 2u64..300, a in any::<u64>(), b in any::<u64>(),
        which in any::<usize>(), bit in any::<u8>(),
    ) {
        let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let t = Tree::of_leaf_hashes(&leaves);
        let second = 2 + b % (n - 1);
        let first = 1 + a % (second - 1);
        let (r1, r2) = (t.root(first), t.root(second));
        let mut path = t.prove(&consistency_plan(first, second));
        prop_assert!(verify_consistency(first, second, &r1, &r2, &path));
        let mut bad = r1;
        bad[(bit % 32) as usize] ^= 1;
        prop_assert!(!verify_consistency(first, second, &bad, &r2, &path));
        prop_assert!(!verify_consistency(first, second, &r1, &bad, &path));
        prop_assert!(!verify_consistency(first + 1, second, &t.root(first + 1), &r2, &path));
        if second < n {
            prop_assert!(!verify_consistency(first, second + 1, &r1, &t.root(second + 1), &path));
        }
        if !path.is_empty() {
            flip(&mut path, which, bit);
            prop_assert!(!verify_consistency(first, second, &r1, &r2, &path));
        }
    }
}
