/**
 * `mvnet attach | detach | ls | reconcile | gc`: HostNetwork on the command line. Each run is one
 * short process: published ports are held by our sockets only while it runs (see host-network.ts for
 * what the record still guarantees afterwards).
 */
import { existsSync } from "node:fs";
import { type Command, InvalidArgumentError } from "commander";
import {
  type Attachment,
  HostNetwork,
  type HostNetworkOptions,
  type ReconcileReport,
} from "../host/index.js";
import { readBootstrapState } from "../store/bootstrap-state.js";
import { DEFAULT_STATE_DB } from "../store/state-db.js";
import { table } from "./format.js";
import { collect, parseHostPorts } from "./policy-commands.js";

/** The global options these commands read from the program. */
interface HostGlobals {
  json?: boolean;
  table?: string;
  db?: string;
  stateDir?: string;
}

function int(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError("not a non-negative integer");
  return Number(value);
}

/** Where the state database is: `--db`, else `$MVNET_DB`, else /var/lib/microvm-net/state.db. */
export function statePathOf(db?: string): string {
  return db ?? process.env.MVNET_DB ?? DEFAULT_STATE_DB;
}

function portText(a: Attachment): string {
  return a.ports
    .map((p) => `${p.protocol}/${p.hostIp === "0.0.0.0" ? "*" : p.hostIp}:${p.hostPort}->${p.guestPort}`)
    .join(" ");
}

/** One row per VM: id, state, TAP, guest address, MAC, ports. */
export function formatVms(vms: readonly Attachment[]): string {
  if (vms.length === 0) return "no VMs attached";
  return table(
    ["VM", "STATE", "TAP", "GUEST", "MAC", "MTU", "PORTS"],
    vms.map((a) => [
      a.vmId,
      a.state,
      a.tap,
      `${a.guestIp}/${a.prefix}`,
      a.guestMac,
      String(a.mtu),
      portText(a),
    ]),
  );
}

/** The human form of one attachment. */
export function formatAttachment(a: Attachment): string {
  return [
    `${a.state} ${a.vmId}`,
    `  tap          ${a.tap} (mtu ${a.mtu}${a.uid !== undefined ? `, owner ${a.uid}:${a.gid}` : ""})`,
    `  guest        ${a.guestIp}/${a.prefix} via ${a.hostIp}, mac ${a.guestMac}`,
    `  ports        ${portText(a) || "none"}`,
    `  boot arg     ${a.bootArg}`,
    `  firecracker  ${JSON.stringify(a.firecracker)}`,
  ].join("\n");
}

function formatReport(r: ReconcileReport): string {
  const list = (xs: readonly string[]) => (xs.length ? xs.join(", ") : "none");
  return [
    `rolled back:        ${list(r.rolledBack)}`,
    `finished detaches:  ${list(r.finishedDetaches)}`,
    `recreated TAPs:     ${list(r.recreatedTaps)}`,
    `removed TAPs:       ${list(r.removedTaps)}`,
    `mappings:           ${r.addedMappings} added, ${r.removedMappings} removed`,
    `in progress:        ${list(r.inProgress)}`,
    `ports held elsewhere: ${r.unheldPorts.length ? r.unheldPorts.map((p) => `${p.vmId} ${p.protocol}/${p.hostPort}`).join(", ") : "none"}`,
  ].join("\n");
}

/**
 * The VMs recorded in the state database at `statePath`, for `mvnet status`; [] when there is no
 * database yet (it is not created). Read-only: holds no port, changes nothing in the kernel.
 */
export async function readVms(statePath?: string): Promise<Attachment[]> {
  const path = statePathOf(statePath);
  if (!existsSync(path)) return [];
  const hn = await HostNetwork.open({ statePath: path, holdPorts: false });
  try {
    return hn.list();
  } finally {
    await hn.close();
  }
}

/**
 * Adds `attach`, `detach`, `ls`, `reconcile` and `gc` to `program`, and the global option
 * `--db <path>`. The program's own `--json` and `--table` options are honoured.
 */
export function registerHostCommands(program: Command): void {
  program.option("--db <path>", `state database of attach/detach (default $MVNET_DB or ${DEFAULT_STATE_DB})`);
  const g = (): HostGlobals => program.opts<HostGlobals>();
  const out = (human: string, data: unknown) =>
    process.stdout.write(g().json ? `${JSON.stringify(data, null, 2)}\n` : `${human}\n`);
  const withHost = async <T>(
    fn: (hn: HostNetwork) => Promise<T>,
    extra: HostNetworkOptions = {},
  ): Promise<T> => {
    const hn = await HostNetwork.open({
      statePath: statePathOf(g().db),
      table: g().table,
      stateDir: g().stateDir,
      ...extra,
    });
    try {
      return await fn(hn);
    } finally {
      await hn.close();
    }
  };

  program
    .command("attach <vm>")
    .description("give a VM its TAP, address, MAC and published ports; prints what its VMM needs")
    .option(
      "-p, --publish <spec>",
      "[hostIp:][hostPort:]guestPort[/proto], ranges as 8000-8010 (repeatable)",
      collect,
      [],
    )
    .option("--uid <uid>", "owner uid of the TAP (the VMM's)", int)
    .option("--gid <gid>", "owner gid of the TAP", int)
    .option("--mtu <bytes>", "MTU", int)
    .option("--guest-ip <ip>", "a specific guest address")
    .option("--dns <ip>", "DNS server for the guest's boot argument (repeatable, at most 2)", collect, [])
    .option("--subnet <cidr>", "guest subnet (only while no VM is recorded); default 10.200.0.0/16")
    .option(
      "--allow <entry>",
      "destination this guest may reach beyond the host-wide rules: <ip|cidr>[:<port>[-<port>]][/<tcp|udp>] (repeatable)",
      collect,
      [],
    )
    .option(
      "--host-port <proto:port>",
      "host service this guest may open, e.g. tcp:22 (repeatable)",
      collect,
      [],
    )
    .action(
      async (
        vm: string,
        o: {
          publish: string[];
          uid?: number;
          gid?: number;
          mtu?: number;
          guestIp?: string;
          dns: string[];
          subnet?: string;
          allow: string[];
          hostPort: string[];
        },
      ) => {
        const a = await withHost(
          (hn) =>
            hn.attach(vm, {
              publish: o.publish,
              uid: o.uid,
              gid: o.gid,
              mtu: o.mtu,
              guestIp: o.guestIp,
              dns: o.dns,
              allow: o.allow,
              hostPorts: parseHostPorts(o.hostPort, "host-port"),
            }),
          o.subnet ? { subnet: o.subnet } : {},
        );
        out(formatAttachment(a), a);
        if (!readBootstrapState(program.opts<{ stateDir?: string }>().stateDir)) {
          // attach sets up the VM, not the host: without bootstrap there is no forwarding, NAT or isolation.
          process.stderr.write(
            "mvnet: warning: this host is not bootstrapped; run `mvnet bootstrap` once, or the guest has no egress, its published ports are not forwarded and guests are not isolated\n",
          );
        }
      },
    );

  program
    .command("detach <vm...>")
    .description("take back everything the VMs were given (unknown VMs are fine)")
    .action(async (vms: string[]) => {
      const done = await withHost((hn) =>
        vms.length === 1 ? hn.detach(vms[0] as string).then((d) => (d ? vms : [])) : hn.detachMany(vms),
      );
      out(done.length ? `detached ${done.join(", ")}` : "nothing to detach", { detached: done });
    });

  program
    .command("ls")
    .description("list the VMs attached through mvnet attach")
    .action(async () => {
      const vms = await readVms(g().db);
      out(formatVms(vms), vms);
    });

  program
    .command("reconcile")
    .description("bring TAPs and published ports back to the recorded state; remove our orphans")
    .action(async () => {
      const r = await withHost((hn) => hn.reconcile(), { holdPorts: false });
      out(formatReport(r), r);
    });

  program
    .command("gc [live...]")
    .description("drop every recorded VM except the live ones given (--all: drop every VM)")
    .option("--all", "no VM is live: drop them all")
    .action(async (live: string[], o: { all?: boolean }) => {
      if (live.length === 0 && !o.all) {
        throw new InvalidArgumentError("name the VMs that still exist, or pass --all to drop every VM");
      }
      if (live.length > 0 && o.all) throw new InvalidArgumentError("give live VMs or --all, not both");
      const dropped = await withHost((hn) => hn.gc(live));
      out(dropped.length ? `dropped ${dropped.join(", ")}` : "nothing to drop", { dropped });
    });
}
