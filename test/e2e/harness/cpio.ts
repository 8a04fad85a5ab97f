/**
 * A writer for the "newc" cpio format the kernel unpacks as an initramfs
 * (Documentation/driver-api/early-userspace/buffer-format.rst). Entries are written in the order given,
 * so a directory must come before what it holds. Device nodes need no mknod (nor root) on the builder.
 */

/** One entry of the archive. Paths are relative, without a leading `/` (e.g. `bin/sh`). */
export type CpioEntry =
  | { kind: "dir"; path: string; mode?: number }
  | { kind: "file"; path: string; data: Buffer; mode?: number }
  | { kind: "symlink"; path: string; target: string }
  | { kind: "char"; path: string; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

function pad4(n: number): Buffer {
  return Buffer.alloc((4 - (n % 4)) % 4);
}

function header(fields: number[], name: string): Buffer {
  const hex = fields.map((f) => (f >>> 0).toString(16).padStart(8, "0")).join("");
  const head = Buffer.from(`070701${hex}`, "ascii");
  const nameBuf = Buffer.from(`${name}\0`, "utf8");
  return Buffer.concat([head, nameBuf, pad4(head.length + nameBuf.length)]);
}

/**
 * Packs entries into one uncompressed newc archive, owned by 0:0, mtime 0 (so the same input gives the
 * same bytes), ending with the `TRAILER!!!` entry.
 */
export function cpioNewc(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  const push = (mode: number, data: Buffer, name: string, rdev: [number, number] = [0, 0]) => {
    const nlink = (mode & 0o170000) === S_IFDIR ? 2 : 1;
    const nameSize = Buffer.byteLength(name) + 1;
    // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
    parts.push(header([ino++, mode, 0, 0, nlink, 0, data.length, 0, 0, rdev[0], rdev[1], nameSize, 0], name));
    parts.push(data, pad4(data.length));
  };
  for (const e of entries) {
    switch (e.kind) {
      case "dir":
        push(S_IFDIR | (e.mode ?? 0o755), Buffer.alloc(0), e.path);
        break;
      case "file":
        push(S_IFREG | (e.mode ?? 0o644), e.data, e.path);
        break;
      case "symlink":
        push(S_IFLNK | 0o777, Buffer.from(e.target, "utf8"), e.path);
        break;
      case "char":
        push(S_IFCHR | (e.mode ?? 0o600), Buffer.alloc(0), e.path, [e.major, e.minor]);
        break;
    }
  }
  push(0, Buffer.alloc(0), "TRAILER!!!");
  return Buffer.concat(parts);
}
