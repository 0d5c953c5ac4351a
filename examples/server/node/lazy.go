package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/imcloud/imcloud"
)

// ErrNotConnected is returned by a backend that has not connected yet.
var ErrNotConnected = errors.New("server: backend not connected yet")

// connector dials a backend in the background until it succeeds, logging
// each failure, so that an unreachable Kafka at start is reported clearly
// and retried instead of stopping the process.
type connector[T any] struct {
	name  string
	ready chan struct{}
	stop  chan struct{}
	once  sync.Once
	mu    sync.Mutex
	val   T
	err   error
	close func(T) error
}

func connect[T any](name string, log *slog.Logger, dial func() (T, error), closeFn func(T) error) *connector[T] {
	c := &connector[T]{name: name, ready: make(chan struct{}), stop: make(chan struct{}), close: closeFn}
	go func() {
		backoff := 500 * time.Millisecond
		for {
			v, err := dial()
			if err == nil {
				c.mu.Lock()
				c.val, c.err = v, nil
				c.mu.Unlock()
				close(c.ready)
				log.Info("connected", "backend", name)
				return
			}
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			log.Error("cannot connect; retrying", "backend", name, "err", err, "retry_in", backoff)
			select {
			case <-c.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 10*time.Second)
		}
	}()
	return c
}

// get returns the backend, or an error naming why it is not there yet.
func (c *connector[T]) get() (T, error) {
	select {
	case <-c.ready:
		return c.val, nil
	default:
	}
	var zero T
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return zero, fmt.Errorf("%w: %s: %v", ErrNotConnected, c.name, c.err)
	}
	return zero, fmt.Errorf("%w: %s", ErrNotConnected, c.name)
}

// wait blocks until the backend is connected or ctx ends.
func (c *connector[T]) wait(ctx context.Context) (T, error) {
	select {
	case <-c.ready:
		return c.val, nil
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// Close stops dialing and closes the backend if it connected.
func (c *connector[T]) Close() error {
	var err error
	c.once.Do(func() {
		close(c.stop)
		select {
		case <-c.ready:
			err = c.close(c.val)
		default:
		}
	})
	return err
}

// publisher is logic's Queue.
type publisher interface {
	Publish(ctx context.Context, msgs []*imcloud.Message) error
}

// lazyQueue is a Queue whose Kafka producer connects in the background;
// until then Publish fails at once with a clear error.
type lazyQueue[T publisher] struct{ c *connector[T] }

func (q lazyQueue[T]) Publish(ctx context.Context, msgs []*imcloud.Message) error {
	p, err := q.c.get()
	if err != nil {
		return err
	}
	return p.Publish(ctx, msgs)
}

// consumer is job's Source.
type consumer interface {
	Receive(ctx context.Context) (imcloud.Record, error)
	Commit(ctx context.Context, partition int32, offset int64) error
}

// lazySource is a Source whose consumer group joins in the background;
// Receive waits for it.
type lazySource[T consumer] struct{ c *connector[T] }

func (s lazySource[T]) Receive(ctx context.Context) (imcloud.Record, error) {
	src, err := s.c.wait(ctx)
	if err != nil {
		return imcloud.Record{}, err
	}
	return src.Receive(ctx)
}

func (s lazySource[T]) Commit(ctx context.Context, partition int32, offset int64) error {
	src, err := s.c.get()
	if err != nil {
		return err
	}
	return src.Commit(ctx, partition, offset)
}
