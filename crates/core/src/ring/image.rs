//! The ring's memory image and layout descriptor (for the WinDbg extension).
