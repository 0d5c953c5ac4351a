package logic_test

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/logic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPushEachTarget: Push with each kind of Target publishes what the
// named wrapper (PushKeys, PushMids, PushRoom, Broadcast) does.
func TestPushEachTarget(t *testing.T) {
	cases := []struct {
		target logic.Target
		opts   []logic.PushOption
		want   logic.Result
		check  func(t *testing.T, msgs []*imcloud.Message)
	}{
		{logic.ToKeys("k2", "gone"), nil, logic.Result{Nodes: 1, Keys: 1, Messages: 1}, func(t *testing.T, msgs []*imcloud.Message) {
			assert.Equal(t, imcloud.KindKeys, msgs[0].Kind)
			assert.Equal(t, "node-b", msgs[0].Node)
			assert.Equal(t, []string{"k2"}, msgs[0].Keys)
		}},
		{logic.ToMids(1, 2), nil, logic.Result{Nodes: 2, Keys: 3, Messages: 2}, func(t *testing.T, msgs []*imcloud.Message) {
			byNode := map[string][]string{}
			for _, m := range msgs {
				assert.Equal(t, imcloud.KindKeys, m.Kind, "a mid push travels as keys once resolved")
				keys := append([]string(nil), m.Keys...)
				sort.Strings(keys)
				byNode[m.Node] = keys
			}
			assert.Equal(t, map[string][]string{"node-a": {"k1", "k3"}, "node-b": {"k2"}}, byNode)
		}},
		{logic.ToRoom("live://1000"), []logic.PushOption{logic.WithExpiry(time.Hour)}, logic.Result{Messages: 1}, func(t *testing.T, msgs []*imcloud.Message) {
			assert.Equal(t, imcloud.KindRoom, msgs[0].Kind)
			assert.Equal(t, "live://1000", msgs[0].Room)
			assert.WithinDuration(t, time.Now().Add(time.Hour), msgs[0].Expires, 5*time.Second)
		}},
		{logic.ToAll(), []logic.PushOption{logic.WithSpeed(50)}, logic.Result{Messages: 1}, func(t *testing.T, msgs []*imcloud.Message) {
			assert.Equal(t, imcloud.KindBroadcast, msgs[0].Kind)
			assert.Equal(t, int32(50), msgs[0].Speed)
		}},
		{logic.ToAll(), nil, logic.Result{Messages: 1}, func(t *testing.T, msgs []*imcloud.Message) {
			assert.Equal(t, int32(0), msgs[0].Speed, "unpaced without WithSpeed")
		}},
		{logic.Target{Kind: logic.TargetMids, Mids: []int64{2}}, nil, logic.Result{Nodes: 1, Keys: 1, Messages: 1}, func(t *testing.T, msgs []*imcloud.Message) {
			assert.Equal(t, []string{"k3"}, msgs[0].Keys, "a Target built by hand works as ToMids's")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.target.Kind.String(), func(t *testing.T) {
			e := newEnv(t, logic.Config{})
			res, err := e.p.Push(context.Background(), tc.target, 1001, []byte("hi"), tc.opts...)
			require.NoError(t, err)
			assert.False(t, res.ID.IsZero(), "every push has an id")
			res.ID = imcloud.MessageID{}
			assert.Equal(t, tc.want, res)
			msgs := e.drain(t)
			require.Len(t, msgs, tc.want.Messages)
			for _, m := range msgs {
				assert.Equal(t, int32(1001), m.Op)
				assert.Equal(t, "hi", string(m.Body))
			}
			tc.check(t, msgs)

			// The asynchronous variant publishes the same.
			got := make(chan logic.Result, 1)
			require.NoError(t, e.p.PushAsync(context.Background(), tc.target, 1001, []byte("hi"), func(r logic.Result, err error) {
				assert.NoError(t, err)
				r.ID = imcloud.MessageID{}
				got <- r
			}, tc.opts...))
			assert.Equal(t, tc.want, <-got)
			tc.check(t, e.drain(t))
		})
	}
}

// TestPushBadTargets: a target that makes no sense is ErrInvalidArgument
// with a message naming what is wrong, before anything is published.
func TestPushBadTargets(t *testing.T) {
	e := newEnv(t, logic.Config{})
	cases := []struct {
		name   string
		target logic.Target
		opts   []logic.PushOption
		want   string
	}{
		{"zero target", logic.Target{}, nil, "no target kind"},
		{"unknown kind", logic.Target{Kind: 9}, nil, "no target kind"},
		{"kind without fields", logic.Target{Kind: logic.TargetKeys}, nil, "no keys"},
		{"no keys", logic.ToKeys(), nil, "no keys"},
		{"empty key", logic.ToKeys("k1", ""), nil, "empty key"},
		{"no mids", logic.ToMids(), nil, "no mids"},
		{"room without type", logic.ToRoom("1000"), nil, `invalid room key: "1000" is not "type://id"`},
		{"room without id", logic.ToRoom("live://"), nil, `is not "type://id"`},
		{"empty room", logic.ToRoom(""), nil, `is not "type://id"`},
		{"room target with mids", logic.Target{Kind: logic.TargetRoom, Room: "live://1", Mids: []int64{1}}, nil, "target room carries mids"},
		{"broadcast with keys", logic.Target{Kind: logic.TargetAll, Keys: []string{"k1"}}, nil, "target all carries keys"},
		{"keys target with a room", logic.Target{Kind: logic.TargetKeys, Keys: []string{"k1"}, Room: "live://1"}, nil, "target keys carries a room"},
		{"speed on a room push", logic.ToRoom("live://1"), []logic.PushOption{logic.WithSpeed(10)}, "a speed paces broadcasts only"},
		{"negative speed", logic.ToAll(), []logic.PushOption{logic.WithSpeed(-1)}, "negative speed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.p.Push(context.Background(), tc.target, 1000, nil, tc.opts...)
			require.ErrorIs(t, err, logic.ErrInvalidArgument)
			assert.Contains(t, err.Error(), tc.want)
			err = e.p.PushAsync(context.Background(), tc.target, 1000, nil, func(logic.Result, error) {
				t.Error("the callback of a refused push ran")
			}, tc.opts...)
			require.ErrorIs(t, err, logic.ErrInvalidArgument)
		})
	}
	for _, room := range []string{"1000", "live://", "://1", ""} {
		_, err := e.p.Push(context.Background(), logic.ToRoom(room), 1000, nil)
		require.ErrorIs(t, err, imcloud.ErrInvalidRoomKey, "room %q", room)
	}
	_, err := e.p.Push(context.Background(), logic.ToAll(), 0, nil)
	require.ErrorIs(t, err, logic.ErrInvalidArgument, "a good target does not excuse a bad op")
	require.NoError(t, e.p.Close())
	assert.Zero(t, e.queue.Len())
	assert.Zero(t, e.p.Stats().Failed, "refused before the pool")
}

func TestTargetKindString(t *testing.T) {
	for k, want := range map[logic.TargetKind]string{
		logic.TargetKeys: "keys", logic.TargetMids: "mids", logic.TargetRoom: "room", logic.TargetAll: "all", 0: "TargetKind(0)",
	} {
		assert.Equal(t, want, k.String())
	}
}
