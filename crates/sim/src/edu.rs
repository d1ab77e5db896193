//! QEMU's `edu` device as the driver sees it through BAR0 (QEMU `hw/misc/edu.c`,
//! `docs/specs/edu.rst`: <https://www.qemu.org/docs/master/specs/edu.html>).

use ctxscope_core::logic::{DeviceRegisters, edu};

/// The identification register's value: version 1.0 (`0x01`, `0x00`) above the `0xed` tag.
pub(crate) const IDENTIFICATION: u32 = 0x0100_00ed;

/// BAR0's length: QEMU maps 1 MiB of MMIO.
pub(crate) const BAR0_LEN: u64 = 1 << 20;

/// The registers ctxscope uses, with QEMU's behaviour. The interrupt is modelled as QEMU's `INTx`
/// (the default without `MSISupported` in the INF): a level that stays asserted while the
/// interrupt status register is non-zero (`edu_raise_irq` / `edu_lower_irq`).
#[derive(Debug, Default)]
pub(crate) struct EduDevice {
    /// Interrupt status (0x24).
    status: u32,
    /// Last value written to the liveness register (0x04); reads return its inverse.
    liveness: u32,
    /// The line went from deasserted to asserted since [`EduDevice::take_assertion`] last looked.
    asserted: bool,
}

impl EduDevice {
    /// Whether the interrupt line has just been asserted (a raise found the status at zero); the
    /// simulator then delivers the interrupt after the configured latency. Clears the flag.
    pub(crate) fn take_assertion(&mut self) -> bool {
        core::mem::take(&mut self.asserted)
    }

    /// Whether the line is asserted now (status non-zero): a level-triggered interrupt is taken
    /// only while it is.
    pub(crate) const fn line_asserted(&self) -> bool {
        self.status != 0
    }
}

impl DeviceRegisters for EduDevice {
    fn read32(&mut self, offset: u32) -> u32 {
        match offset {
            edu::REG_IDENTIFICATION => IDENTIFICATION,
            edu::REG_LIVENESS => !self.liveness,
            edu::REG_INTERRUPT_STATUS => self.status,
            // edu_mmio_read starts from ~0 and returns it for registers it does not decode.
            _ => u32::MAX,
        }
    }

    fn write32(&mut self, offset: u32, value: u32) {
        match offset {
            edu::REG_LIVENESS => self.liveness = value,
            edu::REG_INTERRUPT_RAISE => {
                let was_asserted = self.line_asserted();
                self.status |= value;
                if !was_asserted && self.line_asserted() {
                    self.asserted = true;
                }
            }
            edu::REG_INTERRUPT_ACK => self.status &= !value,
            // Writes to other registers (factorial, DMA) are not used by ctxscope.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_qemu_edu() {
        let mut device = EduDevice::default();
        assert_eq!(
            device.read32(edu::REG_IDENTIFICATION) & 0xffff,
            edu::IDENTIFICATION_TAG
        );
        device.write32(edu::REG_LIVENESS, 0x1234_5678);
        assert_eq!(device.read32(edu::REG_LIVENESS), !0x1234_5678);
        assert!(!device.line_asserted());
        device.write32(edu::REG_INTERRUPT_RAISE, 0x1);
        assert!(device.take_assertion());
        assert!(!device.take_assertion());
        device.write32(edu::REG_INTERRUPT_RAISE, 0x4);
        assert!(!device.take_assertion(), "already asserted: no new edge");
        assert_eq!(device.read32(edu::REG_INTERRUPT_STATUS), 0x5);
        device.write32(edu::REG_INTERRUPT_ACK, 0x1);
        assert_eq!(device.read32(edu::REG_INTERRUPT_STATUS), 0x4);
        device.write32(edu::REG_INTERRUPT_ACK, 0x4);
        assert!(!device.line_asserted());
        assert_eq!(device.read32(0x40), u32::MAX);
    }
}
