//! Connection-level tests: protocol traces built from wire bytes, adversarial input, real
//! traffic recorded from the `h2` crate, and split invariance.

mod adversarial;
pub(crate) mod builders;
mod late_join;
pub(crate) mod real_traffic;
mod resync;
mod split;
mod traces;
