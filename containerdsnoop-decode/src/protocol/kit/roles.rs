//! Sides and roles: which socket of a connection is the client, learnt once and asked
//! everywhere, so that no decoder spells out `if side == client { Request } else { Response }`
//! again.

use crate::protocol::call::{Role, Side};

/// Who the client of one connection is, once known. The connection table usually knows from
/// the start (the socket that bound the matched path is the server); otherwise the first
/// request or response seen decides ([`Roles::learn`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Roles {
    client: Option<Side>,
}

impl Roles {
    pub fn with_client(client: Option<Side>) -> Roles {
        Roles { client }
    }

    pub fn with_server(server: Option<Side>) -> Roles {
        Roles {
            client: server.map(Side::other),
        }
    }

    /// The side that sends requests, once known.
    pub fn client(self) -> Option<Side> {
        self.client
    }

    /// The side that answers, once known.
    pub fn server(self) -> Option<Side> {
        self.client.map(Side::other)
    }

    /// The role of what `side` sends, once the client is known.
    pub fn of(self, side: Side) -> Option<Role> {
        side.role(self.client)
    }

    /// The role of what `side` sends, taking it for a request while nobody is known to be
    /// the client: bytes of unknown structure are shown rather than held back.
    pub fn of_or_request(self, side: Side) -> Role {
        self.of(side).unwrap_or(Role::Request)
    }

    /// `side` was seen sending a message of `role`: while the client is unknown, that settles
    /// it. Once known it never changes (a confused peer does not swap the roles).
    pub fn learn(&mut self, side: Side, role: Role) {
        if self.client.is_none() {
            self.client = Some(match role {
                Role::Request => side,
                Role::Response => side.other(),
            });
        }
    }

    /// Like [`Roles::learn`], and whether what is known agrees with it afterwards (false: the
    /// client was known to be the other side).
    pub fn agree(&mut self, side: Side, role: Role) -> bool {
        self.learn(side, role);
        self.of(side) == Some(role)
    }

    /// The roles `side` may play: its own once the client is known, both before.
    pub fn possible(self, side: Side) -> &'static [Role] {
        match self.of(side) {
            Some(Role::Request) => &[Role::Request],
            Some(Role::Response) => &[Role::Response],
            None => &[Role::Request, Role::Response],
        }
    }

    /// `side`'s direction as an arrow (`client→server`, `server→client`), once known.
    pub fn arrow(self, side: Side) -> Option<&'static str> {
        match self.of(side)? {
            Role::Request => Some("client→server"),
            Role::Response => Some("server→client"),
        }
    }

    /// The side the end of a connection's open calls is reported from: the server, or B while
    /// nobody is known to be the client.
    pub fn end_side(self) -> Side {
        self.server().unwrap_or(Side::B)
    }

    /// `side`'s direction for notices: `"{protocol} client→server"`, `"{protocol}
    /// server→client"`, or just the protocol while the roles are unknown.
    pub fn direction(self, protocol: &str, side: Side) -> String {
        match self.arrow(side) {
            Some(arrow) => format!("{protocol} {arrow}"),
            None => protocol.to_string(),
        }
    }

    /// What `side` sends, as a noun for notices: `request`, `response`, or `message`.
    pub fn noun(self, side: Side) -> &'static str {
        match self.of(side) {
            Some(Role::Request) => "request",
            Some(Role::Response) => "response",
            None => "message",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learning_settles_the_client_once() {
        let mut r = Roles::default();
        assert_eq!(
            (r.of(Side::A), r.of_or_request(Side::B)),
            (None, Role::Request)
        );
        assert_eq!(r.end_side(), Side::B);
        assert_eq!(r.direction("ttrpc", Side::A), "ttrpc");
        r.learn(Side::A, Role::Response);
        assert_eq!(r.client(), Some(Side::B));
        r.learn(Side::A, Role::Request);
        assert_eq!(r.client(), Some(Side::B), "a known client never changes");
        assert_eq!(r.of(Side::A), Some(Role::Response));
        assert_eq!(r.end_side(), Side::A);
        assert_eq!(r.direction("HTTP", Side::B), "HTTP client→server");
        assert_eq!((r.noun(Side::A), r.noun(Side::B)), ("response", "request"));
        assert_eq!(r.arrow(Side::A), Some("server→client"));
        assert_eq!(r.possible(Side::B), &[Role::Request]);
        assert!(r.agree(Side::B, Role::Request));
        assert!(
            !r.agree(Side::A, Role::Request),
            "a known client is not overruled"
        );
        assert_eq!(Roles::default().possible(Side::A).len(), 2);
        assert_eq!(Roles::default().arrow(Side::A), None);
        assert!(Roles::default().agree(Side::A, Role::Response));
        assert_eq!(Roles::with_server(Some(Side::A)).client(), Some(Side::B));
        assert_eq!(
            Roles::with_server(None).of_or_request(Side::A),
            Role::Request
        );
    }
}
