import { readlinkSync } from "node:fs";
import { expect, it } from "vitest";
import { ipJson, kernelDescribe } from "../helpers/kernel.js";

kernelDescribe("private namespace", () => {
  it("runs in a namespace of its own with only lo", () => {
    expect(readlinkSync("/proc/self/ns/net")).toBe(process.env.MVNET_TEST_NETNS);
    const links = ipJson<Array<{ ifname: string }>>("link", "show");
    expect(links.map((l) => l.ifname)).toEqual(["lo"]);
  });
});
