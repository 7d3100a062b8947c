//! Names: agents registered under keywords (`:LOGGER`), usable wherever an
//! agent is (SPEC section 3). A name is freed when its agent exits.
//!
//! Lock order (the same as in `agent`): registry lock, then an agent's lock
//! (`register` calls `Agent::set_name`, and `register`, `whereis` and
//! `registered` call `Agent::is_alive`, under the registry lock); an exiting
//! agent drops its own lock before it calls `release`, so the two never
//! wait on each other.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::agent::{Agent, NameError};

static NAMES: Mutex<Option<HashMap<String, Agent>>> = Mutex::new(None);

fn names() -> MutexGuard<'static, Option<HashMap<String, Agent>>> {
    NAMES.lock().unwrap_or_else(|e| e.into_inner())
}

/// The canonical form of a name: without a leading colon, upper-case.
pub fn normalize(name: &str) -> String {
    name.strip_prefix(':').unwrap_or(name).to_uppercase()
}

fn validate(name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '/' && c != ':');
    if ok {
        Ok(())
    } else {
        Err(NameError::Invalid(name.to_owned()))
    }
}

/// Registers `agent` under `name` (`"logger"` or `":logger"`; names are
/// case-insensitive).
///
/// # Errors
/// [`NameError::Taken`] if another agent holds the name,
/// [`NameError::AlreadyNamed`] if the agent has another name,
/// [`NameError::Dead`] if it has exited, [`NameError::Invalid`] for an empty
/// name or one with `/`, `:`, spaces or control characters.
pub fn register(name: &str, agent: &Agent) -> Result<(), NameError> {
    let name = normalize(name);
    validate(&name)?;
    let mut names = names();
    let map = names.get_or_insert_with(HashMap::new);
    if let Some(holder) = map.get(&name) {
        if holder == agent {
            return Ok(());
        }
        if holder.is_alive() {
            return Err(NameError::Taken(name));
        }
    }
    agent.set_name(Some(name.clone()))?;
    map.insert(name, agent.clone());
    Ok(())
}

/// Removes a name.
///
/// # Errors
/// [`NameError::Unknown`] if no agent holds it.
pub fn unregister(name: &str) -> Result<(), NameError> {
    let name = normalize(name);
    let agent = names()
        .as_mut()
        .and_then(|m| m.remove(&name))
        .ok_or(NameError::Unknown(name))?;
    let _ = agent.set_name(None);
    Ok(())
}

/// The agent registered as `name`, if any.
pub fn whereis(name: &str) -> Option<Agent> {
    let name = normalize(name);
    names()
        .as_ref()
        .and_then(|m| m.get(&name).cloned())
        .filter(Agent::is_alive)
}

/// All registered names, sorted.
pub fn registered() -> Vec<String> {
    let mut out: Vec<String> = names()
        .as_ref()
        .map(|m| {
            m.iter()
                .filter(|(_, a)| a.is_alive())
                .map(|(n, _)| n.clone())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Frees whatever name `agent` holds (called when it exits).
pub(crate) fn release(agent: &Agent) {
    if let Some(map) = names().as_mut() {
        map.retain(|_, holder| holder != agent);
    }
}
