// seedtap: the seed's TAP code path (herd internal/network CreatePointToPointTap and DeleteTap, see
// research/baselines.md §2a) — the same vishvananda/netlink calls in the same order, each TAP timed
// in-process. bench/suites/tap.ts builds and runs it when Go and Debian's
// golang-github-vishvananda-netlink-dev are installed.
//
//	seedtap create PREFIX FROM TO UID   creates PREFIX<i> for FROM <= i < TO
//	seedtap delete PREFIX FROM TO       deletes them, highest i first
//	seedtap cycle PREFIX N UID          creates and deletes PREFIX0, N times
//
// Prints {"create":[ms…],"delete":[ms…]} on stdout.
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/vishvananda/netlink"
)

func guest(i int) net.IP { return net.IPv4(10, 200, byte((i+2)>>8), byte((i+2)&255)) }

// createTap is CreatePointToPointTap: LinkAdd(Tuntap), LinkByName, AddrAdd with a /32 peer, LinkSetUp.
func createTap(name string, i, uid int) error {
	tap := &netlink.Tuntap{
		LinkAttrs: netlink.LinkAttrs{Name: name},
		Mode:      netlink.TUNTAP_MODE_TAP,
		Owner:     uint32(uid),
		Group:     uint32(uid),
	}
	if err := netlink.LinkAdd(tap); err != nil {
		return fmt.Errorf("add tap %s: %w", name, err)
	}
	link, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	addr := &netlink.Addr{
		IPNet: &net.IPNet{IP: net.IPv4(10, 200, 0, 1), Mask: net.CIDRMask(32, 32)},
		Peer:  &net.IPNet{IP: guest(i), Mask: net.CIDRMask(32, 32)},
	}
	if err := netlink.AddrAdd(link, addr); err != nil {
		return err
	}
	return netlink.LinkSetUp(link)
}

// deleteTap is DeleteTap: LinkByName, then LinkDel.
func deleteTap(name string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return nil
	}
	return netlink.LinkDel(link)
}

func timed(f func() error) float64 {
	t := time.Now()
	if err := f(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	return float64(time.Since(t).Nanoseconds()) / 1e6
}

func arg(i int) int {
	v, err := strconv.Atoi(os.Args[i])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad number:", os.Args[i])
		os.Exit(2)
	}
	return v
}

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: seedtap create|delete|cycle …")
		os.Exit(2)
	}
	prefix := os.Args[2]
	out := map[string][]float64{"create": {}, "delete": {}}
	name := func(i int) string { return prefix + strconv.Itoa(i) }
	switch os.Args[1] {
	case "create":
		from, to, uid := arg(3), arg(4), arg(5)
		for i := from; i < to; i++ {
			i := i
			out["create"] = append(out["create"], timed(func() error { return createTap(name(i), i, uid) }))
		}
	case "delete":
		from, to := arg(3), arg(4)
		for i := to - 1; i >= from; i-- {
			i := i
			out["delete"] = append(out["delete"], timed(func() error { return deleteTap(name(i)) }))
		}
	case "cycle":
		n, uid := arg(3), arg(4)
		for j := 0; j < n; j++ {
			out["create"] = append(out["create"], timed(func() error { return createTap(name(0), 0, uid) }))
			out["delete"] = append(out["delete"], timed(func() error { return deleteTap(name(0)) }))
		}
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", os.Args[1])
		os.Exit(2)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(1)
	}
}
