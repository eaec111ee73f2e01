//! The server's half of the WebSocket framing: encoding the frames nodegrid sends (unmasked,
//! as RFC 6455 wants from a server).

use bytes::{BufMut, BytesMut};

/// A close code and the reason text sent with it.
pub type CloseReason = (u16, &'static str);

const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// The opcodes of the server's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    Text,
    Binary,
    Ping,
    Pong,
    Close,
}

/// Appends one unmasked server frame to `buffer`.
pub fn write_frame(buffer: &mut BytesMut, opcode: OpCode, payload: &[u8]) {
    write_frame_header(buffer, opcode, payload.len());
    buffer.put_slice(payload);
}

/// Appends the header of an unmasked server frame whose payload of `length` bytes the caller
/// appends next (and reserves room for it).
pub fn write_frame_header(buffer: &mut BytesMut, opcode: OpCode, length: usize) {
    let code = match opcode {
        OpCode::Text => OP_TEXT,
        OpCode::Binary => OP_BINARY,
        OpCode::Ping => OP_PING,
        OpCode::Pong => OP_PONG,
        OpCode::Close => OP_CLOSE,
    };
    buffer.reserve(length + 10);
    buffer.put_u8(0x80 | code);
    match length {
        0..=125 => buffer.put_u8(length as u8),
        126..=0xFFFF => {
            buffer.put_u8(126);
            buffer.put_u16(length as u16);
        }
        _ => {
            buffer.put_u8(127);
            buffer.put_u64(length as u64);
        }
    }
}

/// Appends a close frame with `code` and `reason` (cut to fit a control frame).
pub fn write_close(buffer: &mut BytesMut, (code, reason): CloseReason) {
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    write_frame(buffer, OpCode::Close, &payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_frames_are_encoded_with_their_lengths() {
        let mut buffer = BytesMut::new();
        write_frame(&mut buffer, OpCode::Text, b"hi");
        assert_eq!(&buffer[..], &[0x81, 2, b'h', b'i']);
        let mut buffer = BytesMut::new();
        write_frame(&mut buffer, OpCode::Binary, &[0; 300]);
        assert_eq!(&buffer[..4], &[0x82, 126, 1, 44]);
        let mut buffer = BytesMut::new();
        write_close(&mut buffer, (4008, "slow_consumer"));
        assert_eq!(&buffer[..4], &[0x88, 15, 0x0f, 0xa8]);
    }
}
