package logic_test

import (
	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/job"
	"github.com/imcloud/imcloud/kafka"
	"github.com/imcloud/imcloud/logic"
	"github.com/imcloud/imcloud/redis"
)

// The routers are also cloud's session and room store and job's node
// directory and room membership, and the memory queue is also job's
// source, by their method sets. logic does not import cloud or job, so
// the assertions live here.
var (
	_ logic.Router       = (*logic.MemoryRouter)(nil)
	_ cloud.SessionStore = (*logic.MemoryRouter)(nil)
	_ cloud.RoomStore    = (*logic.MemoryRouter)(nil)
	_ job.NodeDirectory  = (*logic.MemoryRouter)(nil)
	_ job.Rooms          = (*logic.MemoryRouter)(nil)

	_ logic.Router       = (*redis.Router)(nil)
	_ cloud.SessionStore = (*redis.Router)(nil)
	_ cloud.RoomStore    = (*redis.Router)(nil)
	_ job.NodeDirectory  = (*redis.Router)(nil)
	_ job.Rooms          = (*redis.Router)(nil)

	_ logic.Queue = (*kafka.Queue)(nil)
	_ logic.Queue = (*logic.MemoryQueue)(nil)
	_ job.Source  = (*logic.MemoryQueue)(nil)
)
