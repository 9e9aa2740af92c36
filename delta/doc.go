// Package delta is macro's one delta-sync engine: it moves a tree of files
// (regular files, directories, symlinks, with modes, owners and mtimes)
// from a Source to a Receiver that may already hold an older copy, sending
// only the chunks the receiver lacks.
//
// Files are cut into content-defined chunks (a gear rolling hash with
// normalized chunking, 1 to 32 KiB, about 5 KiB on average: an insertion moves
// only the chunks around it) named by their BLAKE3 hash. A Manifest lists
// the tree: every entry with its metadata and, for a file, its chunks. A
// sync is four steps, whatever carries them (in process, HTTP, a drive):
//
//  1. the source sends its manifest;
//  2. the receiver answers the chunks it lacks (Want): a chunk of any of its
//     old files counts as held, not only one at the same path, and so does
//     a chunk received by an earlier, interrupted sync (kept in a staging
//     area by hash: a restarted sync does not send it again);
//  3. the source streams the wanted chunks as frames (Put); every chunk is
//     hashed on arrival and refused when its hash is not its name;
//  4. the receiver builds the new tree beside the old one (Commit): a file
//     equal to the old one at its path is a hard link to it; a file
//     overwritten at the same offsets is patched in place, its lost bytes
//     kept first in an undo log (patch.go); a file whose every chunk was
//     received is its file pack (the received chunks of a file of 1 MiB
//     or more are staged at their offsets in a file of their own),
//     hashed through and hard-linked (direct.go); any other file is assembled
//     from the old files' chunks (copy_file_range: a reflink on btrfs and
//     xfs) and the received ones (build.go). Received chunks are hashed on
//     arrival and again when used; chunks kept from the old tree are
//     trusted by the receiver's index, which hashed them when it stamped
//     their file (inode, size, mtime, ctime), the stamp being checked
//     again around their use (TreeReceiver.VerifyAll reads and hashes
//     every chunk instead). After the new tree is synced (its files and
//     directories one by one when they are few, else with syncfs), one
//     renameat2(RENAME_EXCHANGE) puts the new tree in place of the old
//     one; a root that cannot be renamed (a mount point, a btrfs
//     subvolume) is switched entry by entry under a journal (swap.go). A
//     crash before the switch leaves the old tree (patches undone from
//     the log by the next use of the state); after it, the new one.
//
// A source keeps an index of its tree (chunks and stamps by path), so a
// file whose stamp did not change is not read again. For a large file it
// also keeps, on btrfs, its extent items, and a changed file is cut again
// only where its items changed (extents.go): a sync of a volume reads
// about what changed; elsewhere, a keyed tag of each chunk, and a changed
// file is read but cut and hashed again only where the tags of its old
// chunks' places differ (tags.go).
//
// A file's chunks fall into content-defined groups (about 16 chunks); a
// receiver that holds a group is sent (the first 8 bytes of) its hash
// instead of its chunk list
// (a compact manifest, expanded and checked against the full manifest's
// hash), so the manifest of a tree the receiver mostly holds is small.
//
// Every parser of received bytes (manifest, frames, chunk references,
// want lists, the index a tree keeps of itself) checks bounds and refuses
// paths that are absolute, hold "..", or lead through a symlink; files
// are written through os.Root as well.
//
// TreeSource and TreeReceiver work on a directory; Store is an encrypted
// chunk store in a directory (a removable drive) that is both; HTTP
// carries a Source (HTTPSource, Handler) and a Receiver (HTTPReceiver,
// Handler) between machines.
package delta
