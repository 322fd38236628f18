//! Output: every way containerdsnoop prints what it saw. Renderers receive typed values (chunks,
//! stream pieces, decoded rows) and never see the capture or the protocol decoders.

pub mod escape;
pub mod json;
pub mod raw;
pub mod table;
pub mod time;
