//! Turning what the files said into the model: group graph checks, depths, memberships.

use std::collections::{BTreeSet, HashMap, HashSet};

use indexmap::IndexMap;

use crate::error::{closest, InventoryError, Location};
use crate::inventory::{Group, Host, Inventory, ShorthandEntry, VarTable, ALL_GROUP};

/// Where something first appeared: file index, then byte offset. Sorting by it gives file order.
pub(crate) type Position = (usize, usize);

/// A group as the files describe it; `children` keep where each was written.
#[derive(Default)]
pub(crate) struct GroupDraft {
    pub(crate) first: Position,
    pub(crate) location: Option<Location>,
    pub(crate) vars: VarTable,
    pub(crate) children: Vec<(String, Location)>,
    pub(crate) hosts: Vec<String>,
}

/// A host as the files describe it.
pub(crate) struct HostDraft {
    pub(crate) first: Position,
    pub(crate) location: Location,
    pub(crate) shorthand: Vec<ShorthandEntry>,
    pub(crate) vars: VarTable,
}

/// Everything read from the files so far, before the cross-file checks of [`Builder::finish`].
#[derive(Default)]
pub(crate) struct Builder {
    pub(crate) groups: IndexMap<String, GroupDraft>,
    pub(crate) hosts: IndexMap<String, HostDraft>,
    /// Problems that do not stop a run (an Ansible variable mop has no use for).
    pub(crate) warnings: Vec<String>,
}

impl Builder {
    /// Checks group references and cycles, computes depths and memberships, orders hosts by
    /// first appearance and checks every host's `mop_via` chain.
    pub(crate) fn finish(mut self, sources: Vec<String>) -> Result<Inventory, InventoryError> {
        self.groups.entry(ALL_GROUP.to_string()).or_default();
        self.check_children()?;
        self.check_group_cycles()?;

        let mut parents: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        for (name, draft) in &self.groups {
            for (child, _) in &draft.children {
                parents
                    .entry(child.as_str())
                    .or_default()
                    .insert(name.as_str());
            }
        }
        let mut depths: HashMap<&str, usize> = HashMap::new();
        for name in self.groups.keys() {
            group_depth(name, &parents, &mut depths);
        }

        // Direct memberships, then every ancestor of those groups.
        let mut memberships: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        for (group_name, draft) in &self.groups {
            for host in &draft.hosts {
                let groups = memberships.entry(host.as_str()).or_default();
                let mut pending = vec![group_name.as_str()];
                while let Some(group) = pending.pop() {
                    if groups.insert(group) {
                        if let Some(group_parents) = parents.get(group) {
                            pending.extend(group_parents.iter().copied());
                        }
                    }
                }
            }
        }

        let mut host_order: Vec<(&String, &HostDraft)> = self.hosts.iter().collect();
        host_order.sort_by_key(|(_, draft)| draft.first);
        let mut hosts = IndexMap::new();
        for (name, draft) in host_order {
            let mut groups: Vec<&str> = memberships
                .get(name.as_str())
                .map(|groups| groups.iter().copied().collect())
                .unwrap_or_default();
            if !groups.contains(&ALL_GROUP) {
                groups.push(ALL_GROUP);
            }
            groups.sort_by_key(|group| (depths[group], *group));
            hosts.insert(
                name.clone(),
                Host {
                    name: name.clone(),
                    groups: groups.into_iter().map(str::to_string).collect(),
                    location: draft.location.clone(),
                    shorthand: draft.shorthand.clone(),
                    vars: draft.vars.clone(),
                },
            );
        }

        let mut group_order: Vec<(&String, &GroupDraft)> = self.groups.iter().collect();
        // An `all` the files never mention sorts first (position (0, 0) by default).
        group_order.sort_by_key(|(_, draft)| draft.first);
        let mut groups = IndexMap::new();
        for (name, draft) in group_order {
            let mut direct_hosts: Vec<String> = draft.hosts.clone();
            direct_hosts.sort_by_key(|host| hosts.get_index_of(host));
            groups.insert(
                name.clone(),
                Group {
                    name: name.clone(),
                    depth: depths[name.as_str()],
                    parents: parents
                        .get(name.as_str())
                        .map(|set| set.iter().map(|parent| parent.to_string()).collect())
                        .unwrap_or_default(),
                    children: draft
                        .children
                        .iter()
                        .map(|(child, _)| child.clone())
                        .collect(),
                    hosts: direct_hosts,
                    location: draft.location.clone(),
                    vars: draft.vars.clone(),
                },
            );
        }

        let inventory = Inventory {
            sources,
            groups,
            hosts,
            group_vars_files: IndexMap::new(),
            host_vars_files: IndexMap::new(),
            warnings: self.warnings.clone(),
        };
        for host in inventory.hosts() {
            let first_link = inventory.inventory_via(host);
            inventory.via_chain(host.name(), first_link)?;
        }
        Ok(inventory)
    }

    fn check_children(&self) -> Result<(), InventoryError> {
        for (name, draft) in &self.groups {
            for (child, location) in &draft.children {
                if name == ALL_GROUP {
                    return Err(InventoryError::at_with_hint(
                        location.clone(),
                        "group `all` cannot have children",
                        "every group is already inside `all`; remove `children` from `all`",
                    ));
                }
                if child == ALL_GROUP {
                    return Err(InventoryError::at_with_hint(
                        location.clone(),
                        format!("group `{name}` lists `all` as a child"),
                        "`all` contains every host and cannot be inside another group",
                    ));
                }
                if !self.groups.contains_key(child) {
                    let known = self.groups.keys().map(String::as_str);
                    let hint = match closest(child, known) {
                        Some(suggestion) => format!("did you mean `{suggestion}`?"),
                        None => format!(
                            "define it, e.g. `[groups.{child}.hosts]`, or remove it from `children`"
                        ),
                    };
                    return Err(InventoryError::at_with_hint(
                        location.clone(),
                        format!("group `{name}` lists undefined child group `{child}`"),
                        hint,
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_group_cycles(&self) -> Result<(), InventoryError> {
        let mut done: HashSet<&str> = HashSet::new();
        for start in self.groups.keys() {
            let mut path: Vec<&str> = Vec::new();
            self.visit_group(start, &mut path, &mut done)?;
        }
        Ok(())
    }

    fn visit_group<'a>(
        &'a self,
        name: &'a str,
        path: &mut Vec<&'a str>,
        done: &mut HashSet<&'a str>,
    ) -> Result<(), InventoryError> {
        if done.contains(name) {
            return Ok(());
        }
        path.push(name);
        if let Some(draft) = self.groups.get(name) {
            for (child, location) in &draft.children {
                if let Some(start) = path.iter().position(|group| *group == child) {
                    let mut cycle: Vec<&str> = path[start..].to_vec();
                    cycle.push(child);
                    return Err(InventoryError::at_with_hint(
                        location.clone(),
                        format!(
                            "group `{child}` is its own ancestor: {}",
                            cycle.join(" -> ")
                        ),
                        "each group in the chain lists the next in `children`; remove one link",
                    ));
                }
                self.visit_group(child, path, done)?;
            }
        }
        path.pop();
        done.insert(name);
        Ok(())
    }
}

fn group_depth<'a>(
    name: &'a str,
    parents: &HashMap<&'a str, BTreeSet<&'a str>>,
    depths: &mut HashMap<&'a str, usize>,
) -> usize {
    if let Some(depth) = depths.get(name) {
        return *depth;
    }
    let depth = if name == ALL_GROUP {
        0
    } else {
        // Cycles were rejected before depths are computed, so this recursion ends.
        parents.get(name).map_or(1, |group_parents| {
            group_parents
                .iter()
                .map(|parent| group_depth(parent, parents, depths) + 1)
                .max()
                .unwrap_or(1)
        })
    };
    depths.insert(name, depth);
    depth
}
