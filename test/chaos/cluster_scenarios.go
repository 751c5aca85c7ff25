package chaos

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// ClusterScenarios are the faults of the cluster mode (DESIGN §8.5, issue 9): with
// STREAM_REPLICAS=3 any one of three NATS nodes may be killed, restarted or lose its
// whole store under load, and nothing accepted is lost.
func ClusterScenarios() []Scenario {
	return []Scenario{
		{Name: "cluster-baseline", About: "3-node NATS cluster, R3 streams, no fault (control)"},
		{Name: "follower-kill", About: "kill -9 of a follower of ROUTER_MESSAGES; restarted after the load", Fault: faultKillNode(routerStream, false)},
		{Name: "leader-kill", About: "kill -9 of the ROUTER_MESSAGES leader; restarted after the load", Fault: faultKillNode(routerStream, true)},
		{Name: "inbox-leader-kill", About: "kill -9 of the NATS inbox stream's leader; restarted after the load", Fault: faultKillNode(inboxStream, true)},
		{Name: "node-wipe", About: "kill -9 of a node, its whole store deleted, restarted empty under load", Fault: faultWipeNode},
		{Name: "rolling-restart", About: "each node in turn: SIGTERM, restart, wait until the streams are current", Fault: faultRollingRestart},
	}
}

// selectFor returns the scenarios o names among the single-node or the cluster ones.
func selectFor(o Options) ([]Scenario, error) {
	if o.Cluster {
		return SelectCluster(o.Scenarios)
	}
	return Select(o.Scenarios)
}

// SelectCluster returns the cluster scenarios named (all for nil, or for "all").
func SelectCluster(names []string) ([]Scenario, error) {
	return selectFrom(ClusterScenarios(), "cluster scenario", names)
}

// faultKillNode kills -9 the leader of stream (leader) or one of its followers and
// returns at once, the node left down: the load goes on with two nodes, and the
// scenario's recovery time runs from the kill, election included. The harness's
// reset restarts the node before the drain.
func faultKillNode(stream string, leader bool) func(context.Context, *harness, time.Duration) error {
	return func(ctx context.Context, h *harness, _ time.Duration) error {
		victim, err := h.pickNode(ctx, stream, leader)
		if err != nil {
			return err
		}
		h.cluster.nodes[victim].kill()
		h.log.Info("killed", slog.String("node", h.cluster.names[victim]), slog.String("stream", stream), slog.Bool("was_leader", leader))
		return nil
	}
}

// faultWipeNode kills -9 a follower of ROUTER_MESSAGES, deletes its whole store and
// restarts it empty while the load goes on: it must catch up from the others.
func faultWipeNode(ctx context.Context, h *harness, d time.Duration) error {
	victim, err := h.pickNode(ctx, routerStream, false)
	if err != nil {
		return err
	}
	n := h.cluster.nodes[victim]
	n.kill()
	if err := h.cluster.wipe(victim); err != nil {
		return err
	}
	h.log.Info("killed and wiped", slog.String("node", h.cluster.names[victim]))
	sleep(ctx, d/3)
	if err := n.start(ctx); err != nil {
		return err
	}
	h.log.Info("restarted empty", slog.String("node", h.cluster.names[victim]))
	return nil
}

// faultRollingRestart restarts each node in turn, as an upgrade does: SIGTERM,
// start, and wait until both streams are current on all three before the next.
func faultRollingRestart(ctx context.Context, h *harness, _ time.Duration) error {
	if h.cluster == nil {
		return errSkipped
	}
	for i, n := range h.cluster.nodes {
		if err := n.stop(); err != nil {
			return fmt.Errorf("stopping %s: %w", h.cluster.names[i], err)
		}
		if err := n.start(ctx); err != nil {
			return err
		}
		if err := h.cluster.waitHealthy(ctx, h.js, 60*time.Second, routerStream, inboxStream); err != nil {
			return err
		}
		h.log.Info("restarted", slog.String("node", h.cluster.names[i]))
	}
	return nil
}

// pickNode returns the index of stream's leader node (leader) or of one of its
// followers; errSkipped without a cluster.
func (h *harness) pickNode(ctx context.Context, stream string, leader bool) (int, error) {
	if h.cluster == nil {
		return 0, errSkipped
	}
	l, err := h.cluster.leader(ctx, h.js, stream)
	if err != nil {
		return 0, err
	}
	if leader {
		return l, nil
	}
	return (l + 1) % ClusterSize, nil
}
