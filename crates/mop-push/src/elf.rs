//! What an agent executable needs from the host to start, read from its ELF headers: the
//! dynamic loader (`PT_INTERP`), the shared libraries (`DT_NEEDED`) and the newest glibc symbol
//! version it links against (`DT_VERNEED`). A static agent needs none of them.
//!
//! Only used to warn before a dynamically linked agent is uploaded, so a header this does not
//! understand reads as "unknown", never as an error.

/// How an executable is linked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Linkage {
    /// The program interpreter (`/lib64/ld-linux-x86-64.so.2`, `/lib/ld-musl-x86_64.so.1`);
    /// `None` for a static executable.
    pub interpreter: Option<String>,
    /// Shared libraries it needs (`libc.so.6`, ...).
    pub needed: Vec<String>,
    /// The newest `GLIBC_x.y` symbol version it needs, e.g. `2.34`.
    pub glibc: Option<String>,
}

impl Linkage {
    pub fn is_static(&self) -> bool {
        self.interpreter.is_none() && self.needed.is_empty()
    }

    /// What a host must have, for messages: `the loader `/lib64/ld-linux-x86-64.so.2`, glibc 2.34
    /// or newer, libgcc_s.so.1, libc.so.6`.
    pub fn requirements(&self) -> String {
        let mut parts = Vec::new();
        if let Some(interpreter) = &self.interpreter {
            parts.push(format!("the loader `{interpreter}`"));
        }
        if let Some(glibc) = &self.glibc {
            parts.push(format!("glibc {glibc} or newer"));
        }
        if !self.needed.is_empty() {
            parts.push(self.needed.join(", "));
        }
        parts.join(", ")
    }
}

/// Reads the linkage of an ELF executable; `None` when the headers are not understood.
pub fn linkage(bytes: &[u8]) -> Option<Linkage> {
    let elf = Elf::new(bytes)?;
    let mut linkage = Linkage::default();
    let mut dynamic = None;
    for index in 0..elf.program_header_count {
        let header = elf.program_header(index)?;
        match header.kind {
            PT_INTERP => {
                let raw = bytes.get(header.offset..header.offset.checked_add(header.file_size)?)?;
                let end = raw.iter().position(|&byte| byte == 0).unwrap_or(raw.len());
                linkage.interpreter = Some(String::from_utf8_lossy(&raw[..end]).into_owned());
            }
            PT_DYNAMIC => dynamic = Some(header),
            _ => {}
        }
    }
    if let Some(dynamic) = dynamic {
        elf.read_dynamic(&dynamic, &mut linkage)?;
    }
    Some(linkage)
}

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_VERNEED: u64 = 0x6fff_fffe;
const DT_VERNEEDNUM: u64 = 0x6fff_ffff;

struct Elf<'a> {
    bytes: &'a [u8],
    wide: bool,
    little: bool,
    program_header_offset: usize,
    program_header_size: usize,
    program_header_count: usize,
}

#[derive(Clone, Copy)]
struct ProgramHeader {
    kind: u32,
    offset: usize,
    address: u64,
    file_size: usize,
}

impl<'a> Elf<'a> {
    fn new(bytes: &'a [u8]) -> Option<Elf<'a>> {
        if bytes.get(..4)? != b"\x7fELF" {
            return None;
        }
        let wide = match bytes.get(4)? {
            1 => false,
            2 => true,
            _ => return None,
        };
        let little = match bytes.get(5)? {
            1 => true,
            2 => false,
            _ => return None,
        };
        let mut elf = Elf {
            bytes,
            wide,
            little,
            program_header_offset: 0,
            program_header_size: 0,
            program_header_count: 0,
        };
        if wide {
            elf.program_header_offset = usize::try_from(elf.u64(32)?).ok()?;
            elf.program_header_size = usize::from(elf.u16(54)?);
            elf.program_header_count = usize::from(elf.u16(56)?);
        } else {
            elf.program_header_offset = usize::try_from(elf.u32(28)?).ok()?;
            elf.program_header_size = usize::from(elf.u16(42)?);
            elf.program_header_count = usize::from(elf.u16(44)?);
        }
        Some(elf)
    }

    fn u16(&self, at: usize) -> Option<u16> {
        let raw: [u8; 2] = self.bytes.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(if self.little {
            u16::from_le_bytes(raw)
        } else {
            u16::from_be_bytes(raw)
        })
    }

    fn u32(&self, at: usize) -> Option<u32> {
        let raw: [u8; 4] = self.bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if self.little {
            u32::from_le_bytes(raw)
        } else {
            u32::from_be_bytes(raw)
        })
    }

    fn u64(&self, at: usize) -> Option<u64> {
        let raw: [u8; 8] = self.bytes.get(at..at.checked_add(8)?)?.try_into().ok()?;
        Some(if self.little {
            u64::from_le_bytes(raw)
        } else {
            u64::from_be_bytes(raw)
        })
    }

    /// A word: 8 bytes in a 64-bit ELF, 4 in a 32-bit one.
    fn word(&self, at: usize) -> Option<u64> {
        if self.wide {
            self.u64(at)
        } else {
            self.u32(at).map(u64::from)
        }
    }

    fn program_header(&self, index: usize) -> Option<ProgramHeader> {
        let at = self
            .program_header_offset
            .checked_add(index.checked_mul(self.program_header_size)?)?;
        let (offset, address, file_size) = if self.wide {
            (self.u64(at + 8)?, self.u64(at + 16)?, self.u64(at + 32)?)
        } else {
            (
                u64::from(self.u32(at + 4)?),
                u64::from(self.u32(at + 8)?),
                u64::from(self.u32(at + 16)?),
            )
        };
        Some(ProgramHeader {
            kind: self.u32(at)?,
            offset: usize::try_from(offset).ok()?,
            address,
            file_size: usize::try_from(file_size).ok()?,
        })
    }

    /// The file offset of a virtual address, through the loadable segments.
    fn file_offset(&self, address: u64) -> Option<usize> {
        (0..self.program_header_count)
            .filter_map(|index| self.program_header(index))
            .filter(|header| header.kind == PT_LOAD)
            .find(|header| {
                address >= header.address && address - header.address < header.file_size as u64
            })
            .and_then(|header| {
                usize::try_from(address - header.address)
                    .ok()?
                    .checked_add(header.offset)
            })
    }

    fn string(&self, table: usize, offset: u64) -> Option<String> {
        let start = table.checked_add(usize::try_from(offset).ok()?)?;
        let raw = self.bytes.get(start..)?;
        let end = raw.iter().position(|&byte| byte == 0)?;
        Some(String::from_utf8_lossy(&raw[..end]).into_owned())
    }

    fn read_dynamic(&self, dynamic: &ProgramHeader, linkage: &mut Linkage) -> Option<()> {
        let entry_size = if self.wide { 16 } else { 8 };
        let mut needed_offsets = Vec::new();
        let (mut string_table, mut verneed, mut verneed_count) = (None, None, 0);
        for index in 0..dynamic.file_size / entry_size {
            let at = dynamic.offset.checked_add(index * entry_size)?;
            let tag = self.word(at)?;
            let value = self.word(at + entry_size / 2)?;
            match tag {
                DT_NULL => break,
                DT_NEEDED => needed_offsets.push(value),
                DT_STRTAB => string_table = self.file_offset(value),
                DT_VERNEED => verneed = self.file_offset(value),
                DT_VERNEEDNUM => verneed_count = value,
                _ => {}
            }
        }
        let string_table = string_table?;
        for offset in needed_offsets {
            linkage.needed.push(self.string(string_table, offset)?);
        }
        if let Some(verneed) = verneed {
            linkage.glibc = self.newest_glibc(verneed, verneed_count, string_table);
        }
        Some(())
    }

    /// Walks the version-needed entries (`Elf_Verneed` and their `Elf_Vernaux`) for the newest
    /// `GLIBC_x.y[.z]`.
    fn newest_glibc(&self, mut entry: usize, count: u64, strings: usize) -> Option<String> {
        let mut newest: Option<Vec<u32>> = None;
        for _ in 0..count.min(1024) {
            let aux_count = self.u16(entry + 2)?;
            let mut aux = entry.checked_add(usize::try_from(self.u32(entry + 8)?).ok()?)?;
            for _ in 0..aux_count {
                let name = self.string(strings, u64::from(self.u32(aux + 8)?))?;
                if let Some(version) = name.strip_prefix("GLIBC_") {
                    let parts: Option<Vec<u32>> =
                        version.split('.').map(|part| part.parse().ok()).collect();
                    if let Some(parts) = parts {
                        if newest.as_ref().is_none_or(|newest| parts > *newest) {
                            newest = Some(parts);
                        }
                    }
                }
                let next = self.u32(aux + 12)?;
                if next == 0 {
                    break;
                }
                aux = aux.checked_add(usize::try_from(next).ok()?)?;
            }
            let next = self.u32(entry + 12)?;
            if next == 0 {
                break;
            }
            entry = entry.checked_add(usize::try_from(next).ok()?)?;
        }
        newest.map(|parts| {
            parts
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(".")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_executable_names_its_loader_libc_and_glibc_version() {
        // The test binary itself: built by cargo for this machine, dynamically linked to glibc.
        let this_test = std::fs::read(std::env::current_exe().expect("current exe"))
            .expect("the test binary is readable");
        let linkage = linkage(&this_test).expect("an ELF the parser understands");
        assert!(!linkage.is_static(), "{linkage:?}");
        let interpreter = linkage.interpreter.clone().expect("a loader");
        assert!(interpreter.contains("ld-linux"), "{linkage:?}");
        assert!(
            linkage.needed.iter().any(|library| library == "libc.so.6"),
            "{linkage:?}"
        );
        let glibc = linkage.glibc.clone().expect("glibc symbol versions");
        assert!(glibc.starts_with("2."), "{linkage:?}");
        let requirements = linkage.requirements();
        assert!(
            requirements.contains(&format!("the loader `{interpreter}`"))
                && requirements.contains(&format!("glibc {glibc} or newer"))
                && requirements.contains("libc.so.6"),
            "{requirements}"
        );
    }

    #[test]
    fn a_static_executable_needs_nothing() {
        // A minimal static ELF64 header: no program headers at all.
        let mut header = vec![0u8; 64];
        header[..4].copy_from_slice(b"\x7fELF");
        header[4] = 2;
        header[5] = 1;
        header[54] = 56;
        let linkage = linkage(&header).expect("parsed");
        assert!(linkage.is_static(), "{linkage:?}");
        assert_eq!(linkage.requirements(), "");
    }

    #[test]
    fn garbage_is_not_understood_and_never_panics() {
        assert_eq!(linkage(b"#!/bin/sh\n"), None);
        let mut truncated = std::fs::read(std::env::current_exe().expect("current exe"))
            .expect("the test binary is readable");
        for length in [0, 3, 20, 63, 64, 200, 4096] {
            truncated.truncate(length);
            let _ = linkage(&truncated);
        }
    }
}
