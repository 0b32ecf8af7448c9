//! `recover`'s matching: which of the server's links is which row's, by key, then by content, never
//! guessed.

use crate::request::LinkRequest;

/// What `recover` makes of one row, from the links the server holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovered {
    /// The row's link: the index of it among the links, and whether its `linkbatch_key` said so.
    Link {
        /// Index into the links.
        link: usize,
        /// Matched by the key in its metadata (else by content).
        by_key: bool,
    },
    /// Several links could be this row's and nothing tells which: settle by hand (`n` candidates).
    Ambiguous(usize),
    /// No link on the server is this row's: the next run sends it.
    None,
}

/// Matches rows (in input order) to the server's links (in creation order). A link whose metadata names a
/// row's key is that row's. Otherwise content decides, among links no key claims: rows of identical content
/// take as many identical links in order when the counts agree, since nothing else can tell them apart; when
/// they do not, every such row is ambiguous, never guessed.
pub fn recover(rows: &[(&str, &LinkRequest)], links: &[crate::api::RemoteLink]) -> Vec<Recovered> {
    use std::collections::HashMap;
    let mut out = vec![Recovered::None; rows.len()];
    let mut claimed = vec![false; links.len()];
    let by_key: HashMap<&str, usize> =
        links.iter().enumerate().filter(|(_, l)| !l.deleted).filter_map(|(i, l)| l.key().map(|k| (k, i))).collect();
    for (row, (key, _)) in rows.iter().enumerate() {
        if let Some(&link) = by_key.get(key) {
            claimed[link] = true;
            out[row] = Recovered::Link { link, by_key: true };
        }
    }
    // The rest by content: rows grouped by their request, each group with the unclaimed links it matches.
    let mut groups: Vec<(&LinkRequest, Vec<usize>)> = Vec::new();
    for (row, (_, request)) in rows.iter().enumerate().filter(|(row, _)| out[*row] == Recovered::None) {
        match groups.iter_mut().find(|(r, _)| *r == *request) {
            Some((_, members)) => members.push(row),
            None => groups.push((request, vec![row])),
        }
    }
    for (request, members) in groups {
        let candidates: Vec<usize> = (0..links.len())
            .filter(|&i| !claimed[i] && links[i].key().is_none() && links[i].matches(request))
            .collect();
        if candidates.len() == members.len() {
            for (&row, &link) in members.iter().zip(&candidates) {
                claimed[link] = true;
                out[row] = Recovered::Link { link, by_key: false };
            }
        } else if !candidates.is_empty() {
            for &row in &members {
                out[row] = Recovered::Ambiguous(candidates.len());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::fixtures::request;

    fn remote(id: &str, title: &str, key: Option<&str>) -> crate::api::RemoteLink {
        crate::api::RemoteLink {
            id: id.into(),
            payment_uri: format!("https://pay/{id}"),
            amount: 1000,
            currency: "thb".into(),
            title: title.into(),
            description: "d".into(),
            multiple: false,
            deleted: false,
            team_template: None,
            metadata: key.map(|k| [(crate::request::KEY_IN_METADATA.to_owned(), k.to_owned())].into()),
        }
    }

    #[test]
    fn recover_matches_by_key_then_by_content_and_never_guesses() {
        let (a, b) = (request("a"), request("b"));
        let rows = [("k1", &a), ("k2", &a), ("k3", &b), ("k4", &b), ("k5", &b), ("k6", &request("c"))];
        let links = [
            remote("l1", "a", None),
            remote("l2", "b", Some("k4")),
            remote("l3", "a", None),
            remote("l4", "b", None),
            remote("l5", "b", None),
            remote("l6", "b", None),
        ];
        let found = recover(&rows, &links);
        assert_eq!(
            found[0],
            Recovered::Link { link: 0, by_key: false },
            "identical rows take identical links in order"
        );
        assert_eq!(found[1], Recovered::Link { link: 2, by_key: false });
        assert_eq!(found[3], Recovered::Link { link: 1, by_key: true }, "a key in metadata decides");
        // k3 and k5 are identical, and three untagged links match them: which is whose cannot be known.
        assert_eq!((&found[2], &found[4]), (&Recovered::Ambiguous(3), &Recovered::Ambiguous(3)));
        assert_eq!(found[5], Recovered::None, "no link: the next run sends it");
    }
}
