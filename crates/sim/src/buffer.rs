//! The I/O manager's buffers for simulated requests.

use core::ops::{Deref, DerefMut};

/// A request buffer that, like the system buffer the I/O manager allocates for buffered I/O
/// (`Irp->AssociatedIrp.SystemBuffer`, from non-paged pool), always starts on an 8-byte boundary,
/// so the driver's decoders see what they would see on Windows. Reused across requests: growing
/// it is the only allocation.
#[derive(Debug, Default)]
pub struct SystemBuffer {
    words: Vec<u64>,
    len: usize,
}

impl SystemBuffer {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self {
            words: Vec::new(),
            len: 0,
        }
    }

    /// Makes the buffer `len` bytes long; new bytes are zero.
    pub fn resize(&mut self, len: usize) {
        self.words.resize(len.div_ceil(8), 0);
        if len > self.len {
            let start = self.len;
            bytemuck::cast_slice_mut::<u64, u8>(&mut self.words)[start..len].fill(0);
        }
        self.len = len;
    }
}

impl Deref for SystemBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &bytemuck::cast_slice::<u64, u8>(&self.words)[..self.len]
    }
}

impl DerefMut for SystemBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut::<u64, u8>(&mut self.words)[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::SystemBuffer;

    #[test]
    fn aligned_zero_filled_and_resizable() {
        let mut buffer = SystemBuffer::new();
        assert!(buffer.is_empty());
        buffer.resize(13);
        assert_eq!(buffer.len(), 13);
        assert_eq!(buffer.as_ptr() as usize % 8, 0);
        buffer[12] = 7;
        buffer.resize(4);
        buffer.resize(13);
        assert_eq!(buffer[12], 0, "bytes regained by growing are zero again");
    }
}
