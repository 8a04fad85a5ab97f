/**
 * HostNetwork: one call per VM. `attach(vmId)` gives a VM everything it needs on the host (an
 * address, a MAC, a TAP, published ports) and returns what its VMM needs; `detach(vmId)` takes all of
 * it back. State lives in a SQLite database (store/), so a restart, a crash or a second process on
 * the same host never hands out an address, port or name twice, and `reconcile()` brings the kernel
 * back to what is recorded.
 *
 * Attach, in this order (each step can be redone or undone from the record alone):
 * 1. allocate, in one IMMEDIATE transaction: guest address (next-fit), MAC (from the address), TAP
 *    name (from the VM id), host ports (held by a socket of ours as they are picked); the record is
 *    written in state `attaching`, naming this process as its owner;
 * 2. the TAP (createPointToPointTap with the VM's uid/gid/MTU, alias `microvm-net:<vmId>`) and, in
 *    the same netlink datagram, a permanent neighbour entry for the guest's MAC (no ARP round trip for
 *    the first packet);
 * 3. (the `neighbour` step hook still fires here, with nothing done since `tap`);
 * 4. the port mappings (nftables map elements) and the VM's policy elements — its MAC bound to its
 *    TAP's index, its resolvers, its `allow` and `hostPorts` (firewall/guest-policy.ts) — in one
 *    nftables transaction, then stale UDP conntrack entries of those ports;
 * 5. the record becomes `attached`.
 * Any failure undoes what was done, in reverse, and deletes the record. A process killed mid-way
 * leaves a record `attaching` whose owner is dead: the next `reconcile()` (or an attach of the same
 * VM) rolls it back.
 *
 * Detach: the record becomes `detaching`; mappings and policy elements go first, in one transaction
 * (so no packet for the VM can reach an address about to be reused, and nothing of its policy is left
 * to a successor at the same address), then UDP conntrack entries towards the guest, then the TAP,
 * then the port holds and the record (which frees address, ports and name).
 *
 * Held ports: in a long-lived process, every published host port stays bound by a socket of ours
 * from the moment it is picked until detach, so no other process can take it between our check and
 * our rule. A one-shot process (the CLI) holds them only while it runs: afterwards the record still
 * keeps every other microvm-net process from handing the port out, but a foreign process may bind it
 * — it then receives none of the published traffic, which the DNAT sends to the guest first. The
 * process that holds a VM's ports is the one that attached it (or that last reconciled it); a detach
 * done elsewhere leaves that process's sockets open until its next `reconcile()` or `close()`.
 *
 * One database serves one network namespace, and HostNetwork owns its subnet: within it, map
 * elements and TAPs marked `microvm-net:<vmId>` that no record explains are removed by `reconcile()`.
 *
 * Beside this file: options.ts (option and result types), request.ts (request checks), records.ts
 * (a record's mappings and policy), taps.ts (finding and deleting VMs' TAPs).
 */
import { constants as osConstants } from "node:os";
import { context, DEFAULT_TAP_GROUP, SUBNET, TAP_ALIAS } from "../api/context.js";
import { listPolicySets } from "../api/guest-policy.js";
import { createPointToPointTap } from "../api/tap.js";
import {
  AlreadyExistsError,
  ConflictError,
  ExhaustedError,
  FirewallError,
  KernelError,
  MvnetError,
  ValidationError,
} from "../core/errors.js";
import { yieldIfHeld } from "../core/loop-budget.js";
import {
  describe as describeValue,
  ipv4ToInt,
  type Protocol,
  prefixMask,
  validateArray,
  validatePath,
} from "../core/validate.js";
import {
  type GuestPolicySpec,
  parsePolicies,
  policyElemChanges,
  policyElementKeys,
  renderPolicyAdd,
  renderPolicyRemove,
} from "../firewall/guest-policy.js";
import {
  addMapping,
  ensureSkeleton,
  listMappings,
  type NftApplier,
  nftErrno,
  removeMapping,
  renderCreateElement,
  renderRemoveElement,
} from "../firewall/index.js";
import { guestBootArg } from "../guest/index.js";
import {
  type ConntrackEntry,
  conntrackDelete,
  conntrackList,
  openConntrackSocket,
} from "../kernel/conntrack.js";
import {
  addrList,
  type Link,
  linkGet,
  linkList,
  type NetlinkSocket,
  neighAdd,
} from "../kernel/netlink/index.js";
import { type ElemChange, setElemTransaction } from "../kernel/nftnl/index.js";
import { holdPort, releasePort } from "../kernel/port-hold.js";
import { isAlive, type ProcessIdentity, selfIdentity } from "../kernel/proc.js";
import { ifaceSysctlPath, sysctlGet, sysctlSet } from "../kernel/sysctl.js";
import { readBootstrapState } from "../store/bootstrap-state.js";
import { Checkpointer } from "../store/checkpointer.js";
import { HostState, type PortRecord, type VmRecord, type VmState } from "../store/host-state.js";
import { DEFAULT_STATE_DB } from "../store/state-db.js";
import {
  type Allocation,
  allocateTapName,
  allocateVm,
  type SubnetInfo,
  VmRecordedError,
  type VmRequest,
} from "./allocate.js";
import { isErrno } from "./errno.js";
import { KeyedMutex, SharedExclusive } from "./locks.js";
import { isVmTap, tapAliasFor, validateVmId } from "./names.js";
import { elementSocket, mappingChanges } from "./nft-elements.js";
import {
  type Attachment,
  type AttachOptions,
  DEFAULT_BATCH_GROUP,
  GUEST_IFACE,
  type HostNetworkHooks,
  type HostNetworkOptions,
  type ReconcileReport,
  type Step,
} from "./options.js";
import {
  DEFAULT_EPHEMERAL_RANGE,
  ephemeralPorts,
  type PortRange,
  readLocalPortPolicy,
} from "./port-space.js";
import { ANY_HOST } from "./publish.js";
import { holdKey, mappingKey, policyOf, portCoversLoopback, toMapping } from "./records.js";
import { normalizeAttach, subnetInfo } from "./request.js";
import { deleteLink, deleteLinks, findTaps } from "./taps.js";

const { EADDRINUSE, ENODEV, ENOENT } = osConstants.errno;

/** Map elements removed per nftables transaction in a batched detach. */
const REMOVE_BATCH = 512;

/**
 * The same over our netlink, which runs on the caller's thread: a transaction of 16 items (each one
 * mapping, or one VM's policy) takes ≈ 1–2 ms here, and the loop gets a turn between transactions once
 * they add up to its budget (core/loop-budget.ts).
 */
const RAW_REMOVE_BATCH = 16;

/** Attaches and detaches after which WAL checkpoints move to a worker thread (see #noteWrite). */
const CHECKPOINTER_AFTER = 16;

/** Records read per slice of a batch detach (a full record costs ≈ 5–10 µs to read). */
const READ_BATCH = 128;

/** See the module comment. Open with {@link HostNetwork.open}; `close()` when done. */
export class HostNetwork {
  readonly #state: HostState;
  readonly #ownsState: boolean;
  readonly #subnet: SubnetInfo;
  readonly #table: string;
  readonly #group: number;
  readonly #batchGroup: number;
  readonly #portRange: PortRange;
  readonly #holdPorts: boolean;
  readonly #nl: NetlinkSocket;
  readonly #nft: NftApplier;
  readonly #hooks: HostNetworkHooks | undefined;
  #checkpointer: Checkpointer | undefined;
  #writes = 0;
  readonly #self: ProcessIdentity = selfIdentity();
  readonly #vmLocks = new KeyedMutex();
  readonly #passes = new SharedExclusive();
  /** VMs this process is attaching or detaching right now. */
  readonly #busy = new Set<string>();
  /** Held port sockets, per VM, by holdKey. */
  readonly #holds = new Map<string, Map<string, number>>();
  #ct: NetlinkSocket | undefined | null;
  #ephemeral: { key: string; ports: number[] } | undefined;
  /** TAPs made again by the reconcile running now. */
  readonly #recreated = new Set<string>();
  #closed = false;
  #closing: Promise<void> | undefined;

  private constructor(
    state: HostState,
    ownsState: boolean,
    subnet: SubnetInfo,
    nl: NetlinkSocket,
    nft: NftApplier,
    o: HostNetworkOptions,
  ) {
    this.#state = state;
    this.#ownsState = ownsState;
    this.#subnet = subnet;
    this.#table = o.table ?? "microvm_net";
    this.#group = o.group ?? DEFAULT_TAP_GROUP;
    this.#batchGroup = o.batchGroup ?? DEFAULT_BATCH_GROUP;
    this.#portRange = o.portRange ?? DEFAULT_EPHEMERAL_RANGE;
    this.#holdPorts = o.holdPorts ?? true;
    this.#nl = nl;
    this.#nft = nft;
    this.#hooks = o.hooks;
  }

  /**
   * Opens the state database and the kernel handles. Does not touch the kernel; call
   * {@link reconcile} at start-up to bring it to the recorded state.
   * @throws ValidationError for bad options (e.g. a `statePath` that is not a non-empty string,
   *   checked before the database is opened); ConflictError when `subnet` differs from the recorded
   *   one while VMs are recorded; SqliteError / MvnetError from the database.
   */
  static async open(options: HostNetworkOptions = {}): Promise<HostNetwork> {
    if (options.statePath !== undefined) validatePath(options.statePath, "statePath");
    if (options.stateDir !== undefined) validatePath(options.stateDir, "stateDir");
    if (options.subnet !== undefined) subnetInfo(options.subnet);
    for (const [field, v] of [
      ["group", options.group],
      ["batchGroup", options.batchGroup],
    ] as const) {
      if (v !== undefined && (!Number.isInteger(v) || v < 1 || v > 0xffffffff)) {
        throw new ValidationError(field, `${describeValue(v)} is not an interface group in 1-4294967295`);
      }
    }
    if ((options.group ?? DEFAULT_TAP_GROUP) === (options.batchGroup ?? DEFAULT_BATCH_GROUP)) {
      throw new ValidationError("batchGroup", "must differ from group");
    }
    if (options.portRange)
      ephemeralPorts(options.portRange, { localRange: { start: 0, end: 0 }, reserved: [] });
    const state = HostState.open(options.statePath ?? DEFAULT_STATE_DB);
    try {
      const cidr = state.write(() => {
        const recorded = state.getMeta("subnet");
        const wanted = subnetInfo(
          options.subnet ?? recorded ?? readBootstrapState(options.stateDir)?.subnet ?? SUBNET,
        );
        const text = `${wanted.cidr.network}/${wanted.cidr.prefix}`;
        if (recorded !== undefined && recorded !== text && state.count() > 0) {
          throw new ConflictError(
            `${state.path} records VMs in ${recorded}; detach them before switching to ${text}`,
          );
        }
        if (recorded !== text) state.setMeta("subnet", text);
        return text;
      });
      const ctx = context({ netlink: options.netlink, nft: options.nft, table: options.table });
      const nft = await ctx.nft();
      return new HostNetwork(state, true, subnetInfo(cidr), ctx.netlink, nft, options);
    } catch (e) {
      state.close();
      throw e;
    }
  }

  /** The guest subnet, e.g. `10.200.0.0/16`. */
  get subnet(): string {
    return `${this.#subnet.cidr.network}/${this.#subnet.cidr.prefix}`;
  }

  /** Path of the state database. */
  get statePath(): string {
    return this.#state.path;
  }

  /**
   * Gives VM `vmId` its network and returns what its VMM needs. Attaching a VM that is already
   * attached with the same options returns its attachment unchanged (a retry is safe).
   * @throws ValidationError for bad input, before anything is touched.
   * @throws AlreadyExistsError when the VM is attached with other options (detach it first).
   * @throws ConflictError when another live process is attaching or detaching this VM, when a
   *   requested address or port is taken (the message names the VM or says "another process").
   * @throws ExhaustedError when no address, port or name is free.
   * @throws KernelError / FirewallError from the kernel, after everything done so far was undone.
   */
  async attach(vmId: string, options: AttachOptions = {}): Promise<Attachment> {
    const id = validateVmId(vmId);
    const req = normalizeAttach(id, options);
    this.#checkOpen();
    return this.#passes.shared(() => this.#vmLocks.run([id], () => this.#attach(req)));
  }

  /**
   * Takes back everything VM `vmId` was given: mappings, then the TAP, then address, ports and name.
   * A VM with no record is a no-op.
   * @returns true when a VM was detached.
   * @throws ValidationError for a bad id; ConflictError when another live process is attaching or
   *   detaching it; KernelError / FirewallError (the record stays `detaching`, and a retry or
   *   `reconcile()` finishes the job).
   */
  async detach(vmId: string): Promise<boolean> {
    const id = validateVmId(vmId);
    this.#checkOpen();
    return this.#passes.shared(() =>
      this.#vmLocks.run([id], async () => (await this.#detachMany([id], true)).length === 1),
    );
  }

  /**
   * Detaches several VMs at once, amortized: their map elements in few nftables transactions, then
   * all their TAPs in one group delete (one RCU grace period, ~16 ms, for the batch instead of one
   * per TAP). Unknown VMs are skipped.
   * @returns the VMs detached.
   * @throws ValidationError (field `vmIds`) when `vmIds` is not an array; as {@link detach}; a
   *   ConflictError for one VM is thrown before anything is touched.
   */
  async detachMany(vmIds: readonly string[]): Promise<string[]> {
    const ids = [...new Set(validateArray(vmIds, "vmIds").map((v) => validateVmId(v)))].sort();
    this.#checkOpen();
    return this.#passes.shared(() => this.#vmLocks.run(ids, () => this.#detachMany(ids, true)));
  }

  /** The attachment of `vmId` (in any state), or undefined. @throws ValidationError. */
  get(vmId: string): Attachment | undefined {
    const id = validateVmId(vmId);
    this.#checkOpen();
    const rec = this.#state.get(id);
    return rec ? this.#toAttachment(rec) : undefined;
  }

  /** Every recorded VM, by id. */
  list(): Attachment[] {
    this.#checkOpen();
    return this.#state.list().map((r) => this.#toAttachment(r));
  }

  /**
   * Brings the kernel to the recorded state: rolls back attaches and finishes detaches that a dead
   * process left half-done, recreates missing TAPs, neighbour entries, mappings and policy elements
   * of attached VMs (a TAP made again gets the VM's MAC bound to its new index), removes our TAPs, map
   * elements (towards our subnet) and policy elements (of guests in our subnet, set through
   * setGuestPolicy included) that no record explains, and holds the recorded ports (when holding is on). Work that another live process is doing is left alone.
   * Safe to run at any time, from any process; runs alone within this process.
   * @throws KernelError / FirewallError on the first failure (a rerun continues from there).
   */
  async reconcile(): Promise<ReconcileReport> {
    this.#checkOpen();
    return this.#passes.exclusive(() => this.#reconcile());
  }

  /**
   * Drops every recorded VM not in `liveVmIds` (VMs that no longer exist), detaching them fully.
   * VMs another live process is attaching or detaching are left alone.
   * @returns the VMs dropped.
   * @throws ValidationError for a bad id; as {@link detachMany}.
   */
  async gc(liveVmIds: readonly string[]): Promise<string[]> {
    if (!Array.isArray(liveVmIds)) throw new ValidationError("liveVmIds", "must be an array of VM ids");
    const live = new Set(liveVmIds.map((v) => validateVmId(v)));
    this.#checkOpen();
    return this.#passes.exclusive(async () => {
      const gone = this.#state
        .list()
        .filter((r) => !live.has(r.vmId) && !(r.state !== "attached" && this.#ownerWorking(r)))
        .map((r) => r.vmId);
      return this.#detachMany(gone, false);
    });
  }

  /**
   * Releases the held ports and closes the database (the kernel state stays). The shared netlink
   * socket and nftables context are not closed (closeShared() does that). Idempotent: every call
   * resolves when the first has finished.
   */
  close(): Promise<void> {
    // Every call gets the same promise: a second close() resolves when the first is done.
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true; // new calls are refused; calls in flight finish first
    await this.#passes.exclusive(async () => undefined);
    for (const vm of this.#holds.values()) for (const fd of vm.values()) releasePort(fd);
    this.#holds.clear();
    this.#ct?.close();
    await this.#checkpointer?.close();
    if (this.#ownsState) this.#state.close();
  }

  // ---- internals ----

  #checkOpen(): void {
    if (this.#closed) throw new MvnetError("ERR_CLOSED", "this HostNetwork is closed");
  }

  /**
   * Counts attaches and detaches; past {@link CHECKPOINTER_AFTER} of them this is a long-lived
   * process, and WAL checkpoints move to a worker thread (store/checkpointer.ts) instead of running
   * inside an attach's commit. A one-shot `mvnet attach` never starts one (a worker costs ≈ 50 ms).
   * The Worker constructor holds the event loop ≈ 5 ms: it runs in a macrotask of its own, so it
   * never adds to the work an attach does between two loop turns (core/loop-budget.ts).
   */
  #noteWrite(): void {
    if (++this.#writes !== CHECKPOINTER_AFTER || !this.#ownsState || this.#state.path === ":memory:") return;
    setImmediate(() => {
      if (this.#closed || this.#checkpointer) return;
      try {
        this.#checkpointer = Checkpointer.start(this.#state.db, this.#state.path);
      } catch {
        // No thread to be had (ERR_WORKER_INIT_FAILED: EAGAIN under RLIMIT_NPROC, out of memory):
        // outside any call, a throw here would end the process. Commits keep checkpointing inline.
      }
    });
  }

  async #step(step: Step, vmId: string): Promise<void> {
    await this.#hooks?.step?.(step, vmId);
  }

  /** True when the owner of an in-progress record is still at work (another live process, or this one). */
  #ownerWorking(rec: VmRecord): boolean {
    if (!rec.owner) return false;
    if (rec.owner.pid === this.#self.pid && rec.owner.start === this.#self.start)
      return this.#busy.has(rec.vmId);
    return isAlive(rec.owner);
  }

  #toAttachment(rec: VmRecord): Attachment {
    const hostIp = this.#subnet.gateway;
    const prefix = this.#subnet.cidr.prefix;
    const a: Attachment = {
      vmId: rec.vmId,
      state: rec.state,
      tap: rec.tap,
      hostIp,
      guestIp: rec.guestIp,
      prefix,
      guestMac: rec.guestMac,
      mtu: rec.mtu,
      dns: rec.dns,
      ports: rec.ports.map((p) => ({
        protocol: p.protocol,
        hostIp: p.hostIp,
        hostPort: p.hostPort,
        guestPort: p.guestPort,
      })),
      bootArg: guestBootArg({ guestIp: rec.guestIp, hostIp, prefix, dns: rec.dns, ifname: GUEST_IFACE }),
      firecracker: { iface_id: GUEST_IFACE, host_dev_name: rec.tap, guest_mac: rec.guestMac, mtu: rec.mtu },
    };
    if (rec.uid !== undefined) a.uid = rec.uid;
    if (rec.gid !== undefined) a.gid = rec.gid;
    return a;
  }

  async #attach(req: VmRequest): Promise<Attachment> {
    const id = req.vmId;
    this.#noteWrite();
    this.#busy.add(id);
    try {
      const alloc = await this.#allocate(req);
      if ("attached" in alloc) return alloc.attached;
      let rec = alloc.record;
      this.#keepHolds(id, rec.ports, alloc.handles);
      try {
        await this.#step("allocated", id);
        const tap = await this.#ensureTap(rec, true);
        rec = tap.rec;
        await this.#step("tap", id);
        // The neighbour entry came in the TAP's own netlink datagram (#ensureTap).
        await this.#step("neighbour", id);
        await this.#addMappingsAndPolicy(rec, tap.index);
        await this.#flushConntrackForPorts(rec.ports);
        await this.#step("mappings", id);
        this.#state.setState(id, "attached");
        rec.state = "attached";
        rec.owner = undefined;
      } catch (e) {
        try {
          await this.#undo(rec);
        } catch {
          // The record stays `attaching` with this process as owner; once this call returns it is
          // no longer busy, so the next reconcile() (or attach) rolls it back.
        }
        throw e;
      }
      await this.#step("attached", id);
      return this.#toAttachment(rec);
    } finally {
      this.#busy.delete(id);
    }
  }

  /**
   * The allocation transaction of an attach. The common case — no record for the VM — costs one
   * write transaction and nothing else (its "is it recorded?" check runs inside it). A record found
   * there is a retry (`attached`: its attachment, or AlreadyExistsError for other options), another
   * live process's work (ConflictError), or a dead process's half-done attach or detach, which is
   * undone before allocating again.
   */
  async #allocate(req: VmRequest): Promise<Allocation | { attached: Attachment }> {
    const id = req.vmId;
    for (let round = 0; ; round++) {
      const alloc = this.#tryAllocate(req);
      if (alloc) return alloc;
      const existing = this.#state.get(id);
      if (!existing) continue; // removed meanwhile: allocate again
      if (existing.state === "attached") {
        if (existing.request === req.json) return { attached: this.#toAttachment(existing) };
        throw new AlreadyExistsError(`VM "${id}" is already attached with other options; detach it first`);
      }
      if (this.#ownerWorking(existing) && existing.owner?.pid !== this.#self.pid) {
        throw new ConflictError(
          `VM "${id}" is being ${existing.state === "attaching" ? "attached" : "detached"} by process ${existing.owner?.pid}`,
        );
      }
      if (round > 0) throw new ConflictError(`VM "${id}" keeps a half-done record that could not be cleared`);
      await this.#undo(existing); // left half-done by a process that died
    }
  }

  /** One allocation transaction; undefined when the VM is recorded already. */
  #tryAllocate(req: VmRequest): Allocation | undefined {
    let ephemeral: readonly number[] = [];
    if (req.wants.some((w) => w.host.kind === "ephemeral")) {
      try {
        ephemeral = this.#ephemeralPorts();
      } catch (e) {
        // The kernel's sysctls leave no ephemeral port: only a retry of a recorded VM still succeeds.
        if (e instanceof ExhaustedError && this.#state.get(req.vmId)) return undefined;
        throw e;
      }
    }
    try {
      return this.#state.write(() =>
        allocateVm(
          this.#state,
          this.#subnet,
          req,
          ephemeral,
          this.#self,
          (proto, ip, port) => this.#takePort(proto, ip, port),
          releasePort,
        ),
      );
    } catch (e) {
      if (e instanceof VmRecordedError) return undefined;
      throw e;
    }
  }

  /** The ephemeral ports under the kernel's current sysctls (recomputed only when they change). */
  #ephemeralPorts(): number[] {
    const policy = readLocalPortPolicy();
    const key = JSON.stringify(policy);
    if (this.#ephemeral?.key !== key)
      this.#ephemeral = { key, ports: ephemeralPorts(this.#portRange, policy) };
    return this.#ephemeral.ports;
  }

  /** PortTaker for allocation: binds and keeps (or, with holding off, binds to check and closes). */
  #takePort(protocol: Protocol, hostIp: string, port: number): number | undefined {
    try {
      return holdPort(protocol, hostIp, port);
    } catch (e) {
      if (isErrno(e, EADDRINUSE)) return undefined;
      throw e;
    }
  }

  #keepHolds(vmId: string, ports: readonly PortRecord[], handles: readonly number[]): void {
    if (!this.#holdPorts) {
      for (const h of handles) releasePort(h);
      return;
    }
    let vm = this.#holds.get(vmId);
    if (!vm) {
      vm = new Map();
      this.#holds.set(vmId, vm);
    }
    ports.forEach((p, i) => {
      const fd = handles[i] as number;
      const old = vm.get(holdKey(p));
      if (old !== undefined && old !== fd) releasePort(old);
      vm.set(holdKey(p), fd);
    });
  }

  #releaseHolds(vmId: string): void {
    const vm = this.#holds.get(vmId);
    if (!vm) return;
    for (const fd of vm.values()) releasePort(fd);
    this.#holds.delete(vmId);
  }

  /**
   * Makes the VM's TAP (owner, MTU, address pair, alias, group, up). A name taken by an interface
   * that is not this VM's leftover is never touched: the VM gets its next name instead (recorded).
   * A leftover of this VM (same alias, or the bare alias of a TAP cut off before its alias was set)
   * is deleted and made again when `fresh` (nothing can be using it yet).
   * @returns the record (with its TAP name updated when it changed) and the TAP's ifindex.
   */
  async #ensureTap(rec: VmRecord, fresh: boolean): Promise<{ rec: VmRecord; index: number }> {
    const avoid = new Set<string>();
    for (let attempt = 0; attempt < 8; attempt++) {
      try {
        const info = await createPointToPointTap(
          rec.tap,
          this.#subnet.gateway,
          rec.guestIp,
          rec.uid ?? 0,
          rec.gid ?? 0,
          {
            mtu: rec.mtu,
            group: this.#group,
            netlink: this.#nl,
            nft: this.#nft,
            table: this.#table,
            // In the TAP's one RTM_NEWLINK: it is never up without the VM's alias.
            alias: tapAliasFor(rec.vmId),
            // A permanent neighbour entry for the guest: no ARP round trip for its first packet.
            guestMac: rec.guestMac,
            // A packet from 127.0.0.1 DNATed to the guest leaves through this TAP; the kernel routes a
            // loopback source to a non-loopback device only with route_localnet (net/ipv4/route.c).
            // Unset: tap.ts still sets it when a mapping made outside HostNetwork covers 127.0.0.1.
            ...(rec.ports.some(portCoversLoopback) ? { routeLocalnet: true } : {}),
          },
        );
        return { rec, index: info.index };
      } catch (e) {
        if (!(e instanceof AlreadyExistsError)) throw e;
      }
      const link = await linkGet(this.#nl, rec.tap);
      if (!link) continue; // gone meanwhile: try the same name again
      const leftover =
        link.kind === "tun" && (link.alias === tapAliasFor(rec.vmId) || link.alias === TAP_ALIAS);
      if (leftover && fresh && link.alias === tapAliasFor(rec.vmId)) {
        await deleteLink(this.#nl, link);
        continue;
      }
      avoid.add(rec.tap);
      const name = this.#state.write(() => {
        const n = allocateTapName(this.#state, rec.vmId, avoid);
        this.#state.setTap(rec.vmId, n);
        return n;
      });
      rec = { ...rec, tap: name };
    }
    throw new ConflictError(`could not find a free TAP name for VM "${rec.vmId}"`);
  }

  /**
   * A fresh VM's map elements and policy elements in one nftables transaction (`create element` for
   * each mapping, `add element` for the policy), so an attach costs one transaction whatever it
   * publishes. When that transaction fails (a key in the way, a flushed table), nothing of it was
   * applied: the mappings are then added one by one ({@link #addMappings} names the owner of a
   * conflict and clears orphans), and the policy in a transaction of its own.
   */
  async #addMappingsAndPolicy(rec: VmRecord, tapIndex: number): Promise<void> {
    const spec = policyOf(rec, tapIndex);
    await ensureSkeleton(this.#nft, this.#table);
    const mappings = rec.ports.map((p) => toMapping(rec.guestIp, p));
    const sock = elementSocket();
    const policyChanges = sock ? policyElemChanges(this.#table, spec, "add") : undefined;
    if (sock && policyChanges) {
      // Our netlink: the same elements and flags as the text below, one datagram, no cache fetch.
      const changes = [...mappingChanges(this.#table, mappings, "create"), ...policyChanges];
      await yieldIfHeld();
      try {
        if (changes.length > 0) setElemTransaction(sock, changes);
        return;
      } catch (e) {
        if (!(e instanceof KernelError)) throw e;
      }
    } else {
      const text =
        mappings.map((m) => renderCreateElement(this.#table, m)).join("") +
        renderPolicyAdd(this.#table, spec);
      try {
        if (text !== "") await this.#nft.run(text);
        return;
      } catch (e) {
        if (!(e instanceof FirewallError)) throw e;
      }
    }
    await this.#addMappings(rec, rec.ports);
    const policy = renderPolicyAdd(this.#table, spec);
    if (policy !== "") await this.#nft.run(policy);
  }

  /**
   * Removes a VM's policy elements (a no-op for those already gone). When the elements in the kernel
   * are not the recorded ones (changed behind our back, so the add-then-delete of the recorded ones
   * can clash with them), whatever that guest has is read back and removed instead.
   */
  async #removePolicy(rec: VmRecord, tapIndex: number | undefined): Promise<void> {
    const text = renderPolicyRemove(this.#table, policyOf(rec, tapIndex));
    if (text === "") return;
    try {
      await this.#nft.run(text);
      return;
    } catch (e) {
      if (!(e instanceof FirewallError)) throw e;
      if (nftErrno(e) === "ENOENT") return; // no table or no set: nothing to remove
    }
    const present = await this.#listPolicies();
    const mine = present.get(rec.guestIp);
    if (mine) await this.#nft.run(renderPolicyRemove(this.#table, mine));
  }

  /** Every guest's policy elements in our table (empty when the table or its sets are missing). */
  async #listPolicies(): Promise<Map<string, GuestPolicySpec>> {
    return parsePolicies(await listPolicySets(this.#nft, this.#table));
  }

  /**
   * Adds the mappings of `ports`. An element in the way that leads into our subnet, to an address no
   * record holds, is an orphan: it is removed and the add retried.
   */
  async #addMappings(rec: VmRecord, ports: readonly PortRecord[]): Promise<number> {
    let added = 0;
    for (const p of ports) {
      const m = toMapping(rec.guestIp, p);
      try {
        if (await addMapping(this.#nft, this.#table, m)) added++;
        continue;
      } catch (e) {
        if (!(e instanceof ConflictError) || !e.owner) throw e;
        const [ip, port] = e.owner.split(":");
        if (!ip || !this.#inSubnet(ip) || this.#state.ipHolder(ipv4ToInt(ip)) !== undefined) throw e;
        await removeMapping(this.#nft, this.#table, { ...m, guestIp: ip, guestPort: Number(port) });
      }
      if (await addMapping(this.#nft, this.#table, m)) added++;
    }
    return added;
  }

  #inSubnet(ip: string): boolean {
    const n = ipv4ToInt(ip);
    return (n & prefixMask(this.#subnet.cidr.prefix)) >>> 0 === this.#subnet.network;
  }

  async #removeMappings(rec: VmRecord): Promise<void> {
    for (const p of rec.ports) await removeMapping(this.#nft, this.#table, toMapping(rec.guestIp, p));
  }

  /**
   * Removes the mappings of many VMs in few transactions: each is `add` + `delete` of the element
   * (renderRemoveElement), which removes it when it leads to this guest and is a no-op when absent.
   * A batch fails whole when one key leads to another guest (or the table is gone); that batch is
   * then done one mapping at a time, which leaves another guest's element alone.
   */
  async #removeMappingsBatch(recs: readonly VmRecord[], taps: ReadonlyMap<string, Link>): Promise<void> {
    // Each VM's policy elements ride in the same transactions (add-then-delete: absent is a no-op).
    // Over our netlink when element changes take it (the same changes as the text, without
    // libnftables' cache fetch); a policy it cannot encode keeps the text path.
    const sock = elementSocket();
    // Items are made a batch's worth at a time, between loop turns: building them all first (text,
    // element changes and policy of every VM) held the loop for ≈ 60 ms at 950 VMs.
    type Item = { text: () => string; changes: ElemChange[] | undefined; undo: () => Promise<unknown> };
    const itemsOf = (r: VmRecord): Item[] => {
      const items: Item[] = r.ports.map((p) => {
        const m = toMapping(r.guestIp, p);
        return {
          text: () => renderRemoveElement(this.#table, m),
          changes: sock ? mappingChanges(this.#table, [m], "remove") : undefined,
          undo: () => removeMapping(this.#nft, this.#table, m),
        };
      });
      const index = taps.get(r.vmId)?.index;
      const spec = policyOf(r, index);
      const text = renderPolicyRemove(this.#table, spec);
      if (text !== "") {
        const changes = sock ? policyElemChanges(this.#table, spec, "remove") : undefined;
        items.push({ text: () => text, changes, undo: () => this.#removePolicy(r, index) });
      }
      return items;
    };
    // Our netlink answers inside the call, so its batches are kept small enough not to stall the loop.
    const size = sock ? RAW_REMOVE_BATCH : REMOVE_BATCH;
    let next = 0;
    let pending: Item[] = [];
    while (next < recs.length || pending.length > 0) {
      await yieldIfHeld();
      while (pending.length < size && next < recs.length) pending.push(...itemsOf(recs[next++] as VmRecord));
      const batch = pending.slice(0, size);
      pending = pending.slice(size);
      if (batch.length === 0) continue;
      try {
        if (sock && batch.every((b) => b.changes !== undefined)) {
          setElemTransaction(
            sock,
            batch.flatMap((b) => b.changes ?? []),
          );
        } else {
          await this.#nft.run(batch.map((b) => b.text()).join(""));
        }
        continue;
      } catch (e) {
        if (!(e instanceof FirewallError) && !(e instanceof KernelError)) throw e;
      }
      for (const b of batch) await b.undo();
    }
  }

  /** The ctnetlink socket, opened on first use; null when the kernel has no ctnetlink. */
  #conntrack(): NetlinkSocket | null {
    if (this.#ct === undefined) {
      try {
        this.#ct = openConntrackSocket();
      } catch (e) {
        if (!(e instanceof KernelError)) throw e;
        this.#ct = null;
      }
    }
    return this.#ct;
  }

  /** Deletes conntrack entries matching `pred` (best effort where the kernel lacks ctnetlink). */
  async #flushConntrack(pred: (e: ConntrackEntry) => boolean): Promise<void> {
    const ct = this.#conntrack();
    if (!ct) return;
    let entries: ConntrackEntry[];
    try {
      entries = await conntrackList(ct);
    } catch (e) {
      if (isErrno(e, ENOENT) || isErrno(e, osConstants.errno.EOPNOTSUPP)) return;
      throw e;
    }
    for (const e of entries) if (pred(e)) await conntrackDelete(ct, e);
  }

  /**
   * Removes UDP conntrack entries towards newly published UDP host ports: a client that sent to the
   * port before (unanswered, or to the previous guest) would keep its entry, whose NAT was decided on
   * its first packet, and never reach the new guest.
   */
  async #flushConntrackForPorts(ports: readonly PortRecord[]): Promise<void> {
    const udp = ports.filter((p) => p.protocol === "udp");
    if (udp.length === 0) return;
    let local: Set<string> | undefined;
    if (udp.some((p) => p.hostIp === ANY_HOST))
      local = new Set((await addrList(this.#nl)).map((a) => a.local));
    await this.#flushConntrack(
      (e) =>
        e.orig.proto === 17 &&
        udp.some(
          (p) =>
            e.orig.dstPort === p.hostPort &&
            (p.hostIp === ANY_HOST ? (local?.has(e.orig.dst) ?? false) : e.orig.dst === p.hostIp),
        ),
    );
  }

  /** Removes UDP conntrack entries translated to these guests (clients of a VM that is going away). */
  async #flushConntrackForGuests(guestIps: ReadonlySet<string>): Promise<void> {
    if (guestIps.size === 0) return;
    await this.#flushConntrack(
      (e) => e.orig.proto === 17 && guestIps.has(e.reply.src) && e.orig.dst !== e.reply.src,
    );
  }

  /** Undoes a record's kernel state (mappings, TAP), its holds and the record, without marking it. */
  async #undo(rec: VmRecord): Promise<void> {
    await this.#removeMappings(rec);
    const link = await linkGet(this.#nl, rec.tap);
    const ours =
      link && link.kind === "tun" && (link.alias === tapAliasFor(rec.vmId) || link.alias === TAP_ALIAS);
    await this.#removePolicy(rec, ours ? link.index : undefined);
    if (ours) await deleteLink(this.#nl, link);
    this.#releaseHolds(rec.vmId);
    this.#state.delete(rec.vmId);
  }

  /**
   * The body of detach / detachMany / gc. `strict`: a VM another live process works on is a
   * ConflictError (thrown before anything is touched); otherwise it is skipped.
   */
  async #detachMany(ids: readonly string[], strict: boolean): Promise<string[]> {
    this.#noteWrite();
    for (const id of ids) this.#busy.add(id);
    try {
      const marked = await this.#markDetaching(ids, strict);
      const recs: VmRecord[] = [];
      for (let i = 0; i < marked.length; i += READ_BATCH) {
        await yieldIfHeld();
        const chunk = marked.slice(i, i + READ_BATCH);
        const found = this.#state.getMany(chunk);
        for (const id of chunk) {
          const r = found.get(id);
          if (r) recs.push(r);
        }
      }
      for (const r of recs) await this.#step("detach:marked", r.vmId);
      const taps = await findTaps(this.#nl, recs);
      await this.#removeMappingsBatch(recs, taps.mine);
      await this.#flushConntrackForGuests(
        new Set(recs.filter((r) => r.ports.some((p) => p.protocol === "udp")).map((r) => r.guestIp)),
      );
      for (const r of recs) await this.#step("detach:mappings", r.vmId);
      await deleteLinks(this.#nl, this.#batchGroup, [...taps.mine.values()], taps.all);
      for (const r of recs) await this.#step("detach:tap", r.vmId);
      // A slice at a time: closing a thousand held sockets and deleting a thousand records (with
      // their ports) in one go held the loop for ≈ 35 ms.
      for (let i = 0; i < recs.length; i += READ_BATCH) {
        await yieldIfHeld();
        const chunk = recs.slice(i, i + READ_BATCH);
        for (const r of chunk) this.#releaseHolds(r.vmId);
        this.#state.deleteMany(chunk.map((r) => r.vmId));
      }
      return recs.map((r) => r.vmId);
    } finally {
      for (const id of ids) this.#busy.delete(id);
    }
  }

  /**
   * Marks the records of `ids` `detaching`, owned by this process, and returns the ids marked (each
   * once). A record another live process is attaching or detaching is a ConflictError when `strict`
   * — before anything is touched: all are checked first from state and owner alone (four columns) —
   * and skipped otherwise. Marking then goes a slice at a time, between loop turns (a thousand rows
   * in one transaction held the loop for ≈ 15 ms); each slice checks its records again inside its
   * transaction, and a conflict that appeared meanwhile puts back what this call had marked.
   */
  async #markDetaching(ids: readonly string[], strict: boolean): Promise<string[]> {
    const busyElsewhere = (rec: { state: VmState; owner?: ProcessIdentity }) =>
      rec.state !== "attached" &&
      rec.owner !== undefined &&
      isAlive(rec.owner) &&
      rec.owner.pid !== this.#self.pid;
    const conflict = (id: string, rec: { state: VmState; owner?: ProcessIdentity }) =>
      new ConflictError(
        `VM "${id}" is being ${rec.state === "attaching" ? "attached" : "detached"} by process ${rec.owner?.pid}`,
      );
    if (strict) {
      for (const [id, rec] of this.#state.statesOf(ids)) if (busyElsewhere(rec)) throw conflict(id, rec);
    }
    const before = new Map<string, { state: VmState; owner?: ProcessIdentity }>();
    try {
      for (let i = 0; i < ids.length; i += READ_BATCH) {
        await yieldIfHeld();
        const chunk = ids.slice(i, i + READ_BATCH);
        this.#state.write(() => {
          const out = new Map<string, { state: VmState; owner?: ProcessIdentity }>();
          const states = this.#state.statesOf(chunk);
          for (const id of chunk) {
            const rec = states.get(id);
            if (!rec || before.has(id) || out.has(id)) continue;
            if (busyElsewhere(rec)) {
              if (strict) throw conflict(id, rec);
              continue;
            }
            out.set(id, rec);
          }
          this.#state.setStateMany([...out.keys()], "detaching", this.#self);
          for (const [id, rec] of out) before.set(id, rec);
        });
      }
    } catch (e) {
      this.#state.write(() => {
        for (const [id, rec] of before) this.#state.setState(id, rec.state, rec.owner);
      });
      throw e;
    }
    return [...before.keys()];
  }

  /**
   * Brings policy elements to the records: each attached VM's recorded policy with its MAC bound to
   * its TAP's current index; nothing for a guest of our subnet that no record explains (a VM detached
   * by a process that died, a TAP made again with a new index). Guests another process is working on
   * are left alone. Each guest that differs is rewritten in one transaction.
   * @returns the guest addresses whose elements were rewritten or removed.
   */
  async #reconcilePolicies(
    recs: readonly VmRecord[],
    protectedIps: ReadonlySet<string>,
    tapIndex: ReadonlyMap<string, number>,
  ): Promise<string[]> {
    const present = await this.#listPolicies();
    const wanted = new Map<string, GuestPolicySpec>();
    for (const r of recs)
      if (r.state === "attached") wanted.set(r.guestIp, policyOf(r, tapIndex.get(r.vmId)));
    const names = new Map<string, number>();
    for (const r of recs) {
      const i = tapIndex.get(r.vmId);
      if (i !== undefined) names.set(r.tap, i);
    }
    const fixed: string[] = [];
    for (const ip of new Set([...present.keys(), ...wanted.keys()])) {
      if (!this.#inSubnet(ip) || protectedIps.has(ip)) continue;
      const have = present.get(ip);
      const want = wanted.get(ip);
      const a = have ? policyElementKeys(have, (n) => names.get(n)) : new Set<string>();
      const b = want ? policyElementKeys(want) : new Set<string>();
      if (a.size === b.size && [...a].every((k) => b.has(k))) continue;
      const text =
        (have ? renderPolicyRemove(this.#table, have) : "") +
        (want ? renderPolicyAdd(this.#table, want) : "");
      if (text !== "") await this.#nft.run(text);
      fixed.push(ip);
    }
    return fixed;
  }

  /** True when the TAP was listed, or was made again during this reconcile. */
  #tapExists(name: string, listed: ReadonlyMap<string, Link>): boolean {
    return listed.has(name) || this.#recreated.has(name);
  }

  async #reconcile(): Promise<ReconcileReport> {
    this.#recreated.clear();
    const report: ReconcileReport = {
      rolledBack: [],
      finishedDetaches: [],
      recreatedTaps: [],
      removedTaps: [],
      addedMappings: 0,
      removedMappings: 0,
      inProgress: [],
      fixedPolicies: [],
      unheldPorts: [],
    };
    // Half-done work of dead processes first.
    for (const rec of this.#state.list()) {
      if (rec.state === "attached") continue;
      if (this.#ownerWorking(rec)) continue;
      if (rec.state === "attaching") {
        await this.#undo(rec);
        report.rolledBack.push(rec.vmId);
      } else {
        await this.#detachMany([rec.vmId], false);
        report.finishedDetaches.push(rec.vmId);
      }
    }
    // Kernel first, records second: a TAP or element made after the records were read could not be
    // explained by them, but one seen before is explained by a record that existed when it was made.
    const links = await linkList(this.#nl);
    const mappings = await listMappings(this.#nft, this.#table);
    const recs = this.#state.list();
    const byTap = new Map(recs.map((r) => [r.tap, r]));
    const protectedIps = new Set<string>();
    for (const r of recs) {
      if (r.state !== "attached") {
        protectedIps.add(r.guestIp);
        report.inProgress.push(r.vmId);
      }
    }

    // Orphan TAPs: marked as a VM's, in our groups, and no record has that name.
    const orphans = links.filter(
      (l) => isVmTap(l) && (l.group === this.#group || l.group === this.#batchGroup) && !byTap.has(l.name),
    );
    await deleteLinks(this.#nl, this.#batchGroup, orphans, links);
    report.removedTaps.push(...orphans.map((l) => l.name));

    // Attached VMs: TAP and neighbour entry.
    const linkByName = new Map(links.map((l) => [l.name, l]));
    const tapIndex = new Map<string, number>();
    for (const r of recs) {
      if (r.state !== "attached") continue;
      const link = linkByName.get(r.tap);
      if (!link) {
        const fresh = this.#state.get(r.vmId);
        if (fresh?.state !== "attached") continue;
        const made = await this.#ensureTap(fresh, false); // its neighbour entry included
        this.#recreated.add(made.rec.tap);
        tapIndex.set(r.vmId, made.index);
        report.recreatedTaps.push(r.vmId);
        continue;
      }
      tapIndex.set(r.vmId, link.index);
      try {
        await neighAdd(this.#nl, { index: link.index, ip: r.guestIp, mac: r.guestMac, permanent: true });
      } catch (e) {
        if (!isErrno(e, ENODEV)) throw e; // detached meanwhile
      }
    }

    // Mappings: the recorded ones present, no orphan towards our subnet.
    const present = new Set(mappings.map(mappingKey));
    const wanted = new Map<string, { rec: VmRecord; port: PortRecord }>();
    for (const r of recs) {
      if (r.state !== "attached") continue;
      for (const p of r.ports) wanted.set(mappingKey(toMapping(r.guestIp, p)), { rec: r, port: p });
    }
    for (const m of mappings) {
      if (!this.#inSubnet(m.guestIp) || protectedIps.has(m.guestIp) || wanted.has(mappingKey(m))) continue;
      if ((await removeMapping(this.#nft, this.#table, m)) === "removed") report.removedMappings++;
    }
    for (const [key, w] of wanted) {
      if (present.has(key)) continue;
      report.addedMappings += await this.#addMappings(w.rec, [w.port]);
    }

    report.fixedPolicies = await this.#reconcilePolicies(recs, protectedIps, tapIndex);

    // route_localnet on TAPs whose mappings cover 127.0.0.1 (teardown clears it on every TAP of ours;
    // the mappings above brought our table, and its guard against 127/8 from outside, back).
    for (const r of recs) {
      if (r.state !== "attached" || !r.ports.some(portCoversLoopback) || !this.#tapExists(r.tap, linkByName))
        continue;
      const path = ifaceSysctlPath("ipv4", r.tap, "route_localnet");
      try {
        if (sysctlGet(path) !== "1") sysctlSet(path, "1");
      } catch (e) {
        if (!isErrno(e, ENOENT)) throw e; // the TAP went away meanwhile
      }
    }

    // Port holds: every attached VM's ports, when holding is on; none for VMs no longer recorded.
    const recorded = new Set(recs.map((r) => r.vmId));
    for (const vmId of [...this.#holds.keys()]) if (!recorded.has(vmId)) this.#releaseHolds(vmId);
    if (this.#holdPorts) {
      for (const r of recs) {
        if (r.state !== "attached") continue;
        const held = this.#holds.get(r.vmId);
        const ports: PortRecord[] = [];
        const fds: number[] = [];
        for (const p of r.ports) {
          if (held?.has(holdKey(p))) continue;
          const fd = this.#takePort(p.protocol, p.hostIp, p.hostPort);
          if (fd === undefined) {
            report.unheldPorts.push({
              vmId: r.vmId,
              protocol: p.protocol,
              hostIp: p.hostIp,
              hostPort: p.hostPort,
              guestPort: p.guestPort,
            });
          } else {
            ports.push(p);
            fds.push(fd);
          }
        }
        if (ports.length > 0) this.#keepHolds(r.vmId, ports, fds);
      }
    }
    return report;
  }
}
