package node

import (
	"context"
	"errors"

	"github.com/imcloud/imcloud"
)

// errClusterPending: the Redis router and Kafka queue are not wired yet.
var errClusterPending = errors.New("server: clustered mode (-redis-addr, -kafka-brokers) is not wired into this build yet")

func (a *App) openClustered() error { return errClusterPending }

func (a *App) deadLetter() func(context.Context, imcloud.Record) error { return nil }
