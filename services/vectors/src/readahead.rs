//! Random-read advice for the embedded shard's inverted indexes.
//!
//! qdrant-edge 0.7 maps each indexed segment's inverted index
//! ([`INVERTED_INDEX_FILE`]) with the kernel's normal read-ahead, where its
//! other files are mapped for random reads. A search reads a few small
//! posting lists at random places; once the indexes no longer fit in
//! memory, read-ahead around each fault pushes out the pages needed next.
//! Advising these mappings for random reads, as Qdrant does its other
//! files, makes a fault read the page it needs
//! (docs/decisions/readahead.md).
//!
//! The mappings are Edge's, so they are found by path in
//! `/proc/self/maps`, after the shard is opened and after every
//! optimization (which maps the indexes of the segments it builds).

use std::ops::Range;
use std::path::Path;

/// The name of a segment's inverted index file in qdrant-edge 0.7.
pub const INVERTED_INDEX_FILE: &str = "inverted_index.dat";

/// Advise the kernel that every mapping of an inverted index under `dir`
/// (an absolute, canonical path, as `/proc/self/maps` shows) is read at
/// random; how many mappings were advised. Mappings already advised are
/// advised again, which changes nothing.
#[cfg(target_os = "linux")]
pub fn advise_random_reads(dir: &Path) -> std::io::Result<usize> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut advised = 0;
    for range in inverted_index_mappings(&maps, dir) {
        match advise_random(range) {
            Ok(()) => advised += 1,
            // Unmapped since the maps were read: a segment an optimization
            // replaced.
            Err(e) if e.raw_os_error() == Some(libc::ENOMEM) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(advised)
}

/// Elsewhere the kernel's defaults stand.
#[cfg(not(target_os = "linux"))]
pub fn advise_random_reads(_dir: &Path) -> std::io::Result<usize> {
    Ok(0)
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn advise_random(range: Range<usize>) -> std::io::Result<()> {
    // SAFETY: MADV_RANDOM only turns off the kernel's read-ahead for page
    // faults in the range. It maps, unmaps, frees or changes the contents
    // or protection of nothing, so no memory this process uses can become
    // invalid through it, whatever the range holds: if the mapping was
    // replaced since `/proc/self/maps` was read, the call fails (ENOMEM)
    // or advises the new mapping, which at worst reads ahead less.
    let rc = unsafe {
        libc::madvise(
            range.start as *mut libc::c_void,
            range.len(),
            libc::MADV_RANDOM,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The address ranges of the mappings, in a `/proc/self/maps` text, of
/// files named [`INVERTED_INDEX_FILE`] under `dir`.
fn inverted_index_mappings(maps: &str, dir: &Path) -> Vec<Range<usize>> {
    maps.lines()
        .filter_map(|line| inverted_index_mapping(line, dir))
        .collect()
}

/// The address range of a mapping line of `/proc/self/maps` (or a
/// mapping's first line in `/proc/self/smaps`) if it maps a file named
/// [`INVERTED_INDEX_FILE`] under `dir`; `None` for any other line.
pub(crate) fn inverted_index_mapping(line: &str, dir: &Path) -> Option<Range<usize>> {
    // address perms offset dev inode pathname (which may hold spaces)
    let mut fields = line.splitn(6, ' ');
    let addresses = fields.next()?;
    let path = Path::new(fields.nth(4)?.trim_start());
    if !path.starts_with(dir)
        || path.file_name()? != INVERTED_INDEX_FILE
        || line.ends_with(" (deleted)")
    {
        return None;
    }
    let (start, end) = addresses.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    (start < end).then_some(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_inverted_indexes_under_the_directory_are_found() {
        let maps = "\
55d0c0a00000-55d0c0a21000 r--p 00000000 fe:01 131 /usr/bin/analyzer
7f0000001000-7f0000005000 r--s 00000000 fe:01 901 /data/vectors/builtin-words/segments/a1/vector_index-lexical/inverted_index.dat
7f0000005000-7f0000006000 r--s 00000000 fe:01 902 /data/vectors/builtin-words/segments/a1/payload_storage/page_0.dat
7f0000006000-7f0000007000 rw-p 00000000 00:00 0 
7f0000007000-7f0000009000 r--s 00000000 fe:01 903 /data/vectors/builtin-words/segments/a2/vector_index-lexical/inverted_index.dat (deleted)
7f0000009000-7f000000c000 r--s 00000000 fe:01 904 /other/vectors/segments/a3/inverted_index.dat
7f000000c000-7f000000d000 r--s 00000000 fe:01 905 /data/vectors/builtin-words/my segments/inverted_index.dat
7f000000d000-7f000000e000 r--s 00000000 fe:01 906 /data/vectors/builtin-words-2/inverted_index.dat
";
        assert_eq!(
            inverted_index_mappings(maps, Path::new("/data/vectors/builtin-words")),
            vec![
                0x7f00_0000_1000..0x7f00_0000_5000,
                0x7f00_0000_c000..0x7f00_0000_d000
            ]
        );
        assert!(inverted_index_mappings(maps, Path::new("/nowhere")).is_empty());
    }
}
