//! The node-to-node protocol after the handshake: one frame (see
//! [`crate::frame`]) per request, a kind byte and fixed fields. PROTOCOL.md
//! documents every byte; this file is the one implementation of it.
//!
//! Field encodings: integers big-endian; `str` is a u16 length then UTF-8
//! bytes; `term` is the codec's encoding and always comes last in a frame,
//! so its length is what remains.

use std::fmt;

pub(crate) use crate::frame::{put_str, FieldError as ProtocolFieldError, Fields};
use crate::term::{self, AgentIds, Term};

/// Room for a request's fields beside its term: two `str` fields (at most
/// 65,537 bytes each), integers and the kind byte fit with room to spare.
pub(crate) const FRAME_OVERHEAD: usize = 256 * 1024;

/// The largest frame a node sends, and the least every node accepts: a
/// term of the default size limit (16 MiB) plus [`FRAME_OVERHEAD`].
pub(crate) const MAX_FRAME: usize = 16 * 1024 * 1024 + FRAME_OVERHEAD;

/// Largest mailbox a SPAWN request may ask for; larger requests are
/// clamped (a peer's `u32` is not a promise of memory).
pub(crate) const MAX_REMOTE_MAILBOX: usize = 1 << 20;

/// Frame kinds after authentication.
pub(crate) mod kind {
    /// Deliver a message: `to_incarnation: u64`, `to: str`, `message: term`.
    pub const SEND: u8 = 0x10;
    /// Spawn a call: `request: u64`, `reply_to: str`, `attach: u8`,
    /// `mailbox: u32`, `call: term`.
    pub const SPAWN: u8 = 0x11;
    /// Spawn result: `request: u64`, `ok: u8`, `text: str` (the new agent's
    /// aid on success, an error message otherwise).
    pub const SPAWN_REPLY: u8 = 0x12;
    /// Attach remote `from` to local `to`: `from: str`,
    /// `to_incarnation: u64`, `to: str`, `monitor: u8`.
    pub const LINK: u8 = 0x13;
    /// Detach: `from: str`, `to_incarnation: u64`, `to: str`.
    pub const UNLINK: u8 = 0x14;
    /// Exit signal: `from: str`, `to_incarnation: u64`, `to: str`,
    /// `reason: term`.
    pub const EXIT: u8 = 0x15;
    /// Exit notification: `from: str`, `to_incarnation: u64`, `to: str`,
    /// `notification: term`.
    pub const NOTICE: u8 = 0x16;
    /// Sign of life, no payload.
    pub const HEARTBEAT: u8 = 0x17;
    /// A local agent of the sender joined a group: `incarnation: u64`,
    /// `group: str`, `member: str`.
    pub const GROUP_JOIN: u8 = 0x18;
    /// A local agent of the sender left a group (or exited):
    /// `incarnation: u64`, `group: str`, `member: str`.
    pub const GROUP_LEAVE: u8 = 0x19;
    /// Part of the sender's local membership, sent after connecting:
    /// `incarnation: u64`, `count: u32`, `count` x (`group: str`,
    /// `member: str`).
    pub const GROUP_SYNC: u8 = 0x1A;
    /// A local agent of the sender holds a global name:
    /// `incarnation: u64`, `registered_at: u64`, `name: str`, `holder: str`.
    pub const GLOBAL_REGISTER: u8 = 0x1B;
    /// A local agent of the sender no longer holds a global name:
    /// `incarnation: u64`, `name: str`, `holder: str`.
    pub const GLOBAL_UNREGISTER: u8 = 0x1C;
    /// Part of the sender's own global names, sent after connecting:
    /// `incarnation: u64`, `count: u32`, `count` x (`registered_at: u64`,
    /// `name: str`, `holder: str`).
    pub const GLOBAL_SYNC: u8 = 0x1D;
    /// Cluster membership: `flags: u8` (bit 0: the sender is hidden; the
    /// other bits are 0), `count: u16`, `count` x `node: str`, the visible
    /// nodes the sender is connected to (all of them in its first NODES on
    /// a connection, each new one after that).
    pub const NODES: u8 = 0x1E;
    /// The sender's connection to a visible node failed: `node: str`,
    /// `incarnation: u64` (the run it was connected to).
    pub const NODE_LOST: u8 = 0x1F;
    /// The sender is closing this connection on purpose: `code: u8` (1: to
    /// prevent an overlapping partition), `cause: str` (the node whose loss
    /// of the receiver caused it).
    pub const DISCONNECT: u8 = 0x20;
    /// Asks for the right to register a global name: `incarnation: u64`,
    /// `request: u64`, `registered_at: u64`, `name: str`, `holder: str`.
    pub const GLOBAL_CLAIM: u8 = 0x21;
    /// Answers a GLOBAL_CLAIM: `request: u64`, `answer: u8` (0 granted, 1
    /// the name is held, 2 an earlier claim competes), `holder: str` (who
    /// holds or claims it; empty when granted).
    pub const GLOBAL_CLAIM_REPLY: u8 = 0x22;
}

/// Most nodes one NODES frame may name; more is malformed (a node has at
/// most `max_connections` peers, 256 by default).
pub(crate) const MAX_ANNOUNCED_NODES: usize = 1024;

/// The NODES flag of a hidden sender.
pub(crate) const NODES_HIDDEN: u8 = 0x01;

/// DISCONNECT's code: the sender drops the receiver so that the cluster
/// splits into fully connected parts.
pub(crate) const DISCONNECT_OVERLAP: u8 = 1;

/// GLOBAL_CLAIM_REPLY answers.
pub(crate) mod claim {
    /// The claim is granted.
    pub const GRANTED: u8 = 0;
    /// The name is held by another agent.
    pub const HELD: u8 = 1;
    /// An earlier claim for the name competes (the sender's own).
    pub const COMPETING: u8 = 2;
}

/// Longest group or global name, in bytes (names are 1 to this many bytes
/// of UTF-8). A frame with a longer or empty name is malformed.
pub(crate) const MAX_NAME: usize = 255;

/// Longest member or holder id in a group or global frame, in bytes: a
/// host and a node of 255 bytes each, two slashes and an aid (16 hex
/// digits, or `:` and a registered name of at most 255 bytes) fit.
pub(crate) const MAX_ID: usize = 1024;

/// Most entries in one GROUP_SYNC or GLOBAL_SYNC frame; more is malformed.
/// A sender splits its state into frames of at most this many entries: at
/// most 4,096 x (2 + 255 + 2 + 1,024 + 8) bytes, about 5.3 MB, well under
/// [`MAX_FRAME`].
pub(crate) const MAX_SYNC_ENTRIES: usize = 4096;

/// A request decoded from a frame. Agent fields hold what the sender wrote:
/// for `to`, the aid part of an id of the receiving node (`"1f"` or
/// `":NAME"`) and, in `to_inc`, the receiving node's incarnation the sender
/// means (0: whichever run is current); for `from`/`reply_to`, a full id
/// `"host/node/aid"` of the sender's current run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Request {
    Send {
        to_inc: u64,
        to: String,
        message: Term,
    },
    Spawn {
        request: u64,
        reply_to: String,
        attach: u8,
        mailbox: u32,
        call: Term,
    },
    SpawnReply {
        request: u64,
        ok: bool,
        text: String,
    },
    Link {
        from: String,
        to_inc: u64,
        to: String,
        monitor: bool,
    },
    Unlink {
        from: String,
        to_inc: u64,
        to: String,
    },
    Exit {
        from: String,
        to_inc: u64,
        to: String,
        reason: Term,
    },
    Notice {
        from: String,
        to_inc: u64,
        to: String,
        notification: Term,
    },
    Heartbeat,
    GroupJoin {
        incarnation: u64,
        group: String,
        member: String,
    },
    GroupLeave {
        incarnation: u64,
        group: String,
        member: String,
    },
    /// (group, member) pairs.
    GroupSync {
        incarnation: u64,
        entries: Vec<(String, String)>,
    },
    GlobalRegister {
        incarnation: u64,
        at: u64,
        name: String,
        holder: String,
    },
    GlobalUnregister {
        incarnation: u64,
        name: String,
        holder: String,
    },
    /// (registered_at, name, holder) triples.
    GlobalSync {
        incarnation: u64,
        entries: Vec<(u64, String, String)>,
    },
    Nodes {
        hidden: bool,
        nodes: Vec<String>,
    },
    NodeLost {
        node: String,
        incarnation: u64,
    },
    Disconnect {
        code: u8,
        cause: String,
    },
    GlobalClaim {
        incarnation: u64,
        request: u64,
        at: u64,
        name: String,
        holder: String,
    },
    GlobalClaimReply {
        request: u64,
        answer: u8,
        holder: String,
    },
}

/// A frame that does not follow the protocol. The connection is closed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ProtocolError {
    UnknownKind(u8),
    Field(ProtocolFieldError),
    Term(String),
    /// A name, id or count outside the bounds PROTOCOL.md gives.
    Bound(&'static str),
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::UnknownKind(k) => write!(f, "unknown request kind 0x{k:02x}"),
            ProtocolError::Field(e) => e.fmt(f),
            ProtocolError::Term(e) => write!(f, "bad term: {e}"),
            ProtocolError::Bound(field) => write!(f, "{field} out of bounds"),
        }
    }
}

impl From<ProtocolFieldError> for ProtocolError {
    fn from(e: ProtocolFieldError) -> ProtocolError {
        ProtocolError::Field(e)
    }
}

/// The rest of the payload as one term (terms always come last).
fn term_field(f: &mut Fields<'_>, limits: &term::Limits) -> Result<Term, ProtocolError> {
    term::decode(f.rest(), limits).map_err(|e| ProtocolError::Term(e.to_string()))
}

/// A group or global name: 1 to [`MAX_NAME`] bytes.
fn name_field<'a>(f: &mut Fields<'a>, field: &'static str) -> Result<&'a str, ProtocolError> {
    let s = f.str(field)?;
    if s.is_empty() || s.len() > MAX_NAME {
        return Err(ProtocolError::Bound(field));
    }
    Ok(s)
}

/// A member or holder id: 1 to [`MAX_ID`] bytes.
fn id_field<'a>(f: &mut Fields<'a>, field: &'static str) -> Result<&'a str, ProtocolError> {
    let s = f.str(field)?;
    if s.is_empty() || s.len() > MAX_ID {
        return Err(ProtocolError::Bound(field));
    }
    Ok(s)
}

/// A SYNC frame's entry count: at most [`MAX_SYNC_ENTRIES`], and no more
/// than the bytes left could hold (`min_entry` bytes each), checked before
/// anything is allocated for them.
fn count_field(f: &mut Fields<'_>, min_entry: usize, left: usize) -> Result<usize, ProtocolError> {
    let count = f.u32("count")? as usize;
    if count > MAX_SYNC_ENTRIES || count.saturating_mul(min_entry) > left {
        return Err(ProtocolError::Bound("count"));
    }
    Ok(count)
}

/// Encodes a request's payload (without the frame header) into `out`.
///
/// # Errors
/// The codec's error if a term cannot go on the wire (a local value, a
/// local agent that has no id).
pub(crate) fn encode(
    request: &Request,
    out: &mut Vec<u8>,
    agents: &dyn AgentIds,
) -> Result<u8, term::EncodeError> {
    Ok(match request {
        Request::Send {
            to_inc,
            to,
            message,
        } => {
            out.extend_from_slice(&to_inc.to_be_bytes());
            put_str(out, to);
            term::encode_into(message, out, agents)?;
            kind::SEND
        }
        Request::Spawn {
            request,
            reply_to,
            attach,
            mailbox,
            call,
        } => {
            out.extend_from_slice(&request.to_be_bytes());
            put_str(out, reply_to);
            out.push(*attach);
            out.extend_from_slice(&mailbox.to_be_bytes());
            term::encode_into(call, out, agents)?;
            kind::SPAWN
        }
        Request::SpawnReply { request, ok, text } => {
            out.extend_from_slice(&request.to_be_bytes());
            out.push(u8::from(*ok));
            put_str(out, text);
            kind::SPAWN_REPLY
        }
        Request::Link {
            from,
            to_inc,
            to,
            monitor,
        } => {
            put_str(out, from);
            out.extend_from_slice(&to_inc.to_be_bytes());
            put_str(out, to);
            out.push(u8::from(*monitor));
            kind::LINK
        }
        Request::Unlink { from, to_inc, to } => {
            put_str(out, from);
            out.extend_from_slice(&to_inc.to_be_bytes());
            put_str(out, to);
            kind::UNLINK
        }
        Request::Exit {
            from,
            to_inc,
            to,
            reason,
        } => {
            put_str(out, from);
            out.extend_from_slice(&to_inc.to_be_bytes());
            put_str(out, to);
            term::encode_into(reason, out, agents)?;
            kind::EXIT
        }
        Request::Notice {
            from,
            to_inc,
            to,
            notification,
        } => {
            put_str(out, from);
            out.extend_from_slice(&to_inc.to_be_bytes());
            put_str(out, to);
            term::encode_into(notification, out, agents)?;
            kind::NOTICE
        }
        Request::Heartbeat => kind::HEARTBEAT,
        Request::GroupJoin {
            incarnation,
            group,
            member,
        }
        | Request::GroupLeave {
            incarnation,
            group,
            member,
        } => {
            out.extend_from_slice(&incarnation.to_be_bytes());
            put_str(out, group);
            put_str(out, member);
            if matches!(request, Request::GroupJoin { .. }) {
                kind::GROUP_JOIN
            } else {
                kind::GROUP_LEAVE
            }
        }
        Request::GroupSync {
            incarnation,
            entries,
        } => {
            out.extend_from_slice(&incarnation.to_be_bytes());
            let count = u32::try_from(entries.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&count.to_be_bytes());
            for (group, member) in entries.iter().take(count as usize) {
                put_str(out, group);
                put_str(out, member);
            }
            kind::GROUP_SYNC
        }
        Request::GlobalRegister {
            incarnation,
            at,
            name,
            holder,
        } => {
            out.extend_from_slice(&incarnation.to_be_bytes());
            out.extend_from_slice(&at.to_be_bytes());
            put_str(out, name);
            put_str(out, holder);
            kind::GLOBAL_REGISTER
        }
        Request::GlobalUnregister {
            incarnation,
            name,
            holder,
        } => {
            out.extend_from_slice(&incarnation.to_be_bytes());
            put_str(out, name);
            put_str(out, holder);
            kind::GLOBAL_UNREGISTER
        }
        Request::GlobalSync {
            incarnation,
            entries,
        } => {
            out.extend_from_slice(&incarnation.to_be_bytes());
            let count = u32::try_from(entries.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&count.to_be_bytes());
            for (at, name, holder) in entries.iter().take(count as usize) {
                out.extend_from_slice(&at.to_be_bytes());
                put_str(out, name);
                put_str(out, holder);
            }
            kind::GLOBAL_SYNC
        }
        Request::Nodes { hidden, nodes } => {
            out.push(if *hidden { NODES_HIDDEN } else { 0 });
            let count = nodes.len().min(MAX_ANNOUNCED_NODES);
            out.extend_from_slice(&(count as u16).to_be_bytes());
            for node in nodes.iter().take(count) {
                put_str(out, node);
            }
            kind::NODES
        }
        Request::NodeLost { node, incarnation } => {
            put_str(out, node);
            out.extend_from_slice(&incarnation.to_be_bytes());
            kind::NODE_LOST
        }
        Request::Disconnect { code, cause } => {
            out.push(*code);
            put_str(out, cause);
            kind::DISCONNECT
        }
        Request::GlobalClaim {
            incarnation,
            request,
            at,
            name,
            holder,
        } => {
            out.extend_from_slice(&incarnation.to_be_bytes());
            out.extend_from_slice(&request.to_be_bytes());
            out.extend_from_slice(&at.to_be_bytes());
            put_str(out, name);
            put_str(out, holder);
            kind::GLOBAL_CLAIM
        }
        Request::GlobalClaimReply {
            request,
            answer,
            holder,
        } => {
            out.extend_from_slice(&request.to_be_bytes());
            out.push(*answer);
            put_str(out, holder);
            kind::GLOBAL_CLAIM_REPLY
        }
    })
}

/// A `host/node` name in a membership frame.
fn node_field<'a>(f: &mut Fields<'a>, field: &'static str) -> Result<&'a str, ProtocolError> {
    let s = f.str(field)?;
    if !super::handshake::valid_full_name(s) {
        return Err(ProtocolError::Bound(field));
    }
    Ok(s)
}

/// Decodes a SEND payload without copying its `to` field: (to_incarnation,
/// to, message).
///
/// # Errors
/// [`ProtocolError`] for a malformed payload.
pub(crate) fn decode_send<'a>(
    payload: &'a [u8],
    limits: &term::Limits,
) -> Result<(u64, &'a str, Term), ProtocolError> {
    let mut f = Fields::new(payload);
    let to_inc = f.u64("to_incarnation")?;
    let to = f.str("to")?;
    let message = term_field(&mut f, limits)?;
    Ok((to_inc, to, message))
}

/// Decodes one request frame's payload.
///
/// # Errors
/// [`ProtocolError`] for anything that is not exactly one well-formed
/// request.
pub(crate) fn decode(
    kind: u8,
    payload: &[u8],
    limits: &term::Limits,
) -> Result<Request, ProtocolError> {
    let mut f = Fields::new(payload);
    let request = match kind {
        kind::SEND => Request::Send {
            to_inc: f.u64("to_incarnation")?,
            to: f.str("to")?.to_owned(),
            message: term_field(&mut f, limits)?,
        },
        kind::SPAWN => Request::Spawn {
            request: f.u64("request")?,
            reply_to: f.str("reply_to")?.to_owned(),
            attach: f.u8("attach")?,
            mailbox: f.u32("mailbox")?,
            call: term_field(&mut f, limits)?,
        },
        kind::SPAWN_REPLY => Request::SpawnReply {
            request: f.u64("request")?,
            ok: f.bool("ok")?,
            text: f.str("text")?.to_owned(),
        },
        kind::LINK => Request::Link {
            from: f.str("from")?.to_owned(),
            to_inc: f.u64("to_incarnation")?,
            to: f.str("to")?.to_owned(),
            monitor: f.bool("monitor")?,
        },
        kind::UNLINK => Request::Unlink {
            from: f.str("from")?.to_owned(),
            to_inc: f.u64("to_incarnation")?,
            to: f.str("to")?.to_owned(),
        },
        kind::EXIT => Request::Exit {
            from: f.str("from")?.to_owned(),
            to_inc: f.u64("to_incarnation")?,
            to: f.str("to")?.to_owned(),
            reason: term_field(&mut f, limits)?,
        },
        kind::NOTICE => Request::Notice {
            from: f.str("from")?.to_owned(),
            to_inc: f.u64("to_incarnation")?,
            to: f.str("to")?.to_owned(),
            notification: term_field(&mut f, limits)?,
        },
        kind::HEARTBEAT => Request::Heartbeat,
        kind::GROUP_JOIN => Request::GroupJoin {
            incarnation: f.u64("incarnation")?,
            group: name_field(&mut f, "group")?.to_owned(),
            member: id_field(&mut f, "member")?.to_owned(),
        },
        kind::GROUP_LEAVE => Request::GroupLeave {
            incarnation: f.u64("incarnation")?,
            group: name_field(&mut f, "group")?.to_owned(),
            member: id_field(&mut f, "member")?.to_owned(),
        },
        kind::GROUP_SYNC => {
            let incarnation = f.u64("incarnation")?;
            // Each entry is at least two u16 lengths and two bytes.
            let count = count_field(&mut f, 6, payload.len())?;
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                let group = name_field(&mut f, "group")?.to_owned();
                let member = id_field(&mut f, "member")?.to_owned();
                entries.push((group, member));
            }
            Request::GroupSync {
                incarnation,
                entries,
            }
        }
        kind::GLOBAL_REGISTER => Request::GlobalRegister {
            incarnation: f.u64("incarnation")?,
            at: f.u64("registered_at")?,
            name: name_field(&mut f, "name")?.to_owned(),
            holder: id_field(&mut f, "holder")?.to_owned(),
        },
        kind::GLOBAL_UNREGISTER => Request::GlobalUnregister {
            incarnation: f.u64("incarnation")?,
            name: name_field(&mut f, "name")?.to_owned(),
            holder: id_field(&mut f, "holder")?.to_owned(),
        },
        kind::GLOBAL_SYNC => {
            let incarnation = f.u64("incarnation")?;
            // Each entry is at least a u64, two u16 lengths and two bytes.
            let count = count_field(&mut f, 14, payload.len())?;
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                let at = f.u64("registered_at")?;
                let name = name_field(&mut f, "name")?.to_owned();
                let holder = id_field(&mut f, "holder")?.to_owned();
                entries.push((at, name, holder));
            }
            Request::GlobalSync {
                incarnation,
                entries,
            }
        }
        kind::NODES => {
            let flags = f.u8("flags")?;
            if flags & !NODES_HIDDEN != 0 {
                return Err(ProtocolError::Bound("flags"));
            }
            let hidden = flags & NODES_HIDDEN != 0;
            let count = f.u16("count")? as usize;
            // A hidden node is passed on by no one, and passes on no one.
            if count > MAX_ANNOUNCED_NODES || (hidden && count > 0) {
                return Err(ProtocolError::Bound("count"));
            }
            let mut nodes: Vec<String> = Vec::with_capacity(count.min(payload.len() / 4));
            for _ in 0..count {
                let node = node_field(&mut f, "node")?;
                if nodes.iter().any(|n| n == node) {
                    return Err(ProtocolError::Bound("node (named twice)"));
                }
                nodes.push(node.to_owned());
            }
            Request::Nodes { hidden, nodes }
        }
        kind::NODE_LOST => Request::NodeLost {
            node: node_field(&mut f, "node")?.to_owned(),
            incarnation: f.u64("incarnation")?,
        },
        kind::DISCONNECT => {
            let code = f.u8("code")?;
            if code != DISCONNECT_OVERLAP {
                return Err(ProtocolError::Bound("code"));
            }
            Request::Disconnect {
                code,
                cause: node_field(&mut f, "cause")?.to_owned(),
            }
        }
        kind::GLOBAL_CLAIM => Request::GlobalClaim {
            incarnation: f.u64("incarnation")?,
            request: f.u64("request")?,
            at: f.u64("registered_at")?,
            name: name_field(&mut f, "name")?.to_owned(),
            holder: id_field(&mut f, "holder")?.to_owned(),
        },
        kind::GLOBAL_CLAIM_REPLY => {
            let request = f.u64("request")?;
            let answer = f.u8("answer")?;
            if answer > claim::COMPETING {
                return Err(ProtocolError::Bound("answer"));
            }
            let holder = f.str("holder")?;
            if holder.len() > MAX_ID || (answer == claim::GRANTED) != holder.is_empty() {
                return Err(ProtocolError::Bound("holder"));
            }
            Request::GlobalClaimReply {
                request,
                answer,
                holder: holder.to_owned(),
            }
        }
        other => return Err(ProtocolError::UnknownKind(other)),
    };
    f.end()?;
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoIds;
    impl AgentIds for NoIds {
        fn wire_id(&self, _: u64) -> Option<(String, u64)> {
            None
        }
    }

    fn all() -> Vec<Request> {
        vec![
            Request::Send {
                to_inc: 0x1234,
                to: "1f".into(),
                message: Term::list(vec![Term::keyword("ping"), 42.into()]),
            },
            Request::Spawn {
                request: 7,
                reply_to: "h/n/0".into(),
                attach: 2,
                mailbox: 64,
                call: Term::list(vec![Term::symbol("f"), 1.into()]),
            },
            Request::SpawnReply {
                request: 7,
                ok: true,
                text: "3".into(),
            },
            Request::Link {
                from: "h/n/1".into(),
                to_inc: 0,
                to: ":LOG".into(),
                monitor: true,
            },
            Request::Unlink {
                from: "h/n/1".into(),
                to_inc: 9,
                to: "2".into(),
            },
            Request::Exit {
                from: "h/n/1".into(),
                to_inc: 9,
                to: "2".into(),
                reason: Term::keyword("kill"),
            },
            Request::Notice {
                from: "h/n/1".into(),
                to_inc: 9,
                to: "2".into(),
                notification: Term::list(vec!["h/n/1".into(), Term::keyword("ok")]),
            },
            Request::Heartbeat,
            Request::GroupJoin {
                incarnation: 5,
                group: "WORKERS".into(),
                member: "h/n/1f".into(),
            },
            Request::GroupLeave {
                incarnation: 5,
                group: "w".into(),
                member: "h/n/:LOG".into(),
            },
            Request::GroupSync {
                incarnation: 5,
                entries: vec![("a".into(), "h/n/1".into()), ("b".into(), "h/n/2".into())],
            },
            Request::GroupSync {
                incarnation: 5,
                entries: vec![],
            },
            Request::GlobalRegister {
                incarnation: 5,
                at: 1_700_000_000_000_000,
                name: "db".into(),
                holder: "h/n/3".into(),
            },
            Request::GlobalUnregister {
                incarnation: 5,
                name: "db".into(),
                holder: "h/n/3".into(),
            },
            Request::GlobalSync {
                incarnation: 5,
                entries: vec![(7, "db".into(), "h/n/3".into())],
            },
            Request::Nodes {
                hidden: false,
                nodes: vec!["h/a".into(), "h/b".into()],
            },
            Request::Nodes {
                hidden: true,
                nodes: vec![],
            },
            Request::NodeLost {
                node: "h/c".into(),
                incarnation: 3,
            },
            Request::Disconnect {
                code: DISCONNECT_OVERLAP,
                cause: "h/a".into(),
            },
            Request::GlobalClaim {
                incarnation: 5,
                request: 9,
                at: 1_700_000_000_000_000,
                name: "db".into(),
                holder: "h/n/3".into(),
            },
            Request::GlobalClaimReply {
                request: 9,
                answer: claim::GRANTED,
                holder: String::new(),
            },
            Request::GlobalClaimReply {
                request: 9,
                answer: claim::HELD,
                holder: "h/m/4".into(),
            },
        ]
    }

    fn nodes_payload(flags: u8, names: &[&str]) -> Vec<u8> {
        let mut p = vec![flags];
        p.extend_from_slice(&(names.len() as u16).to_be_bytes());
        for n in names {
            put_str(&mut p, n);
        }
        p
    }

    #[test]
    fn bad_node_lists_are_malformed() {
        let limits = term::Limits::default();
        let decode_nodes = |p: &[u8]| decode(kind::NODES, p, &limits);
        assert!(decode_nodes(&nodes_payload(0, &["h/a", "h/b"])).is_ok());
        // Repeated, malformed, or from a hidden sender.
        for bad in [
            nodes_payload(0, &["h/a", "h/a"]),
            nodes_payload(0, &["no-slash"]),
            nodes_payload(0, &["h/a b"]),
            nodes_payload(0, &["/a"]),
            nodes_payload(NODES_HIDDEN, &["h/a"]),
            nodes_payload(0x80, &[]),
        ] {
            assert!(
                matches!(decode_nodes(&bad), Err(ProtocolError::Bound(_))),
                "{bad:?}"
            );
        }
        // Too many names, refused from the count alone.
        let many: Vec<String> = (0..=MAX_ANNOUNCED_NODES)
            .map(|i| format!("h/n{i}"))
            .collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(matches!(
            decode_nodes(&nodes_payload(0, &refs)),
            Err(ProtocolError::Bound("count"))
        ));
        // A count larger than the names that follow.
        let mut short = nodes_payload(0, &["h/a"]);
        short[2] = 2;
        assert!(matches!(decode_nodes(&short), Err(ProtocolError::Field(_))));
    }

    #[test]
    fn claim_replies_say_who_holds_unless_granted() {
        let limits = term::Limits::default();
        let reply = |answer: u8, holder: &str| {
            let mut p = 9u64.to_be_bytes().to_vec();
            p.push(answer);
            put_str(&mut p, holder);
            decode(kind::GLOBAL_CLAIM_REPLY, &p, &limits)
        };
        assert!(reply(claim::GRANTED, "").is_ok());
        assert!(reply(claim::COMPETING, "h/n/1").is_ok());
        assert!(reply(claim::GRANTED, "h/n/1").is_err());
        assert!(reply(claim::HELD, "").is_err());
        assert!(reply(3, "h/n/1").is_err());
    }

    /// The annotated GROUP_JOIN dump in PROTOCOL.md section 6.
    #[test]
    fn protocol_md_group_join_dump() {
        let mut out = Vec::new();
        let k = encode(
            &Request::GroupJoin {
                incarnation: 0x0123_4567_89AB_CDEF,
                group: "W".into(),
                member: "h/n/1f".into(),
            },
            &mut out,
            &NoIds,
        )
        .unwrap();
        assert_eq!(k, 0x18);
        let expected: &[u8] = &[
            0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0x00, 0x01, b'W', 0x00, 0x06, b'h',
            b'/', b'n', b'/', b'1', b'f',
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn group_and_global_bounds_are_enforced() {
        let limits = term::Limits::default();
        // Empty and over-long names.
        for name in ["", &"g".repeat(MAX_NAME + 1)] {
            let mut out = 5u64.to_be_bytes().to_vec();
            put_str(&mut out, name);
            put_str(&mut out, "h/n/1");
            assert_eq!(
                decode(kind::GROUP_JOIN, &out, &limits),
                Err(ProtocolError::Bound("group"))
            );
        }
        // A count beyond the cap, and one the bytes cannot hold.
        for count in [MAX_SYNC_ENTRIES as u32 + 1, 1000] {
            let mut out = 5u64.to_be_bytes().to_vec();
            out.extend_from_slice(&count.to_be_bytes());
            assert_eq!(
                decode(kind::GROUP_SYNC, &out, &limits),
                Err(ProtocolError::Bound("count"))
            );
            assert_eq!(
                decode(kind::GLOBAL_SYNC, &out, &limits),
                Err(ProtocolError::Bound("count"))
            );
        }
    }

    /// The annotated NODES dump in PROTOCOL.md section 7, byte for byte.
    #[test]
    fn protocol_md_nodes_dump() {
        let request = Request::Nodes {
            hidden: false,
            nodes: vec!["h/a".into(), "h/b".into()],
        };
        let mut out = Vec::new();
        let start = crate::frame::begin_frame(&mut out, 0);
        let kind = encode(&request, &mut out, &NoIds).expect("encode");
        out[start + 4] = kind;
        crate::frame::finish_frame(&mut out, start).expect("frame");
        let expected: &[u8] = &[
            0x00, 0x00, 0x00, 0x0E, 0x1E, 0x00, 0x00, 0x02, 0x00, 0x03, b'h', b'/', b'a', 0x00,
            0x03, b'h', b'/', b'b',
        ];
        assert_eq!(out, expected);
        assert_eq!(
            decode(kind, &out[5..], &term::Limits::default()).expect("decode"),
            request
        );
    }

    /// The annotated dump in PROTOCOL.md section 5, byte for byte.
    #[test]
    fn protocol_md_send_dump() {
        let mut frame = Vec::new();
        let start = crate::frame::begin_frame(&mut frame, 0);
        let kind = encode(
            &Request::Send {
                to_inc: 0x0123_4567_89AB_CDEF,
                to: "1f".into(),
                message: Term::keyword("hi"),
            },
            &mut frame,
            &NoIds,
        )
        .unwrap();
        frame[start + 4] = kind;
        crate::frame::finish_frame(&mut frame, start).unwrap();
        let expected: &[u8] = &[
            0x00, 0x00, 0x00, 0x15, 0x10, 0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0x00,
            0x02, 0x31, 0x66, 0x01, 0x09, 0x00, 0x00, 0x00, 0x02, 0x48, 0x49,
        ];
        assert_eq!(frame, expected);
    }

    #[test]
    fn every_request_round_trips_and_every_truncation_fails() {
        let limits = term::Limits::default();
        for r in all() {
            let mut out = Vec::new();
            let k = encode(&r, &mut out, &NoIds).unwrap();
            assert_eq!(decode(k, &out, &limits).unwrap(), r);
            for cut in 0..out.len() {
                // Terms come last and are self-delimiting, so a cut is
                // always noticed.
                assert!(
                    decode(k, &out[..cut], &limits).is_err(),
                    "{r:?} cut at {cut}"
                );
            }
            let mut longer = out.clone();
            longer.push(0);
            assert!(decode(k, &longer, &limits).is_err());
        }
        assert_eq!(
            decode(0xEE, &[], &limits),
            Err(ProtocolError::UnknownKind(0xEE))
        );
    }
}
