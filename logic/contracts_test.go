package logic_test

import (
	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/job"
	"github.com/imcloud/imcloud/logic"
)

// The routers are also cloud's session store and job's node directory, and
// the memory queue is also job's source, by their method sets. logic does
// not import cloud or job, so the assertions live here.
var (
	_ logic.Router       = (*logic.MemoryRouter)(nil)
	_ cloud.SessionStore = (*logic.MemoryRouter)(nil)
	_ job.NodeDirectory  = (*logic.MemoryRouter)(nil)

	_ logic.Router       = (*logic.RedisRouter)(nil)
	_ cloud.SessionStore = (*logic.RedisRouter)(nil)
	_ job.NodeDirectory  = (*logic.RedisRouter)(nil)

	_ logic.Queue = (*logic.KafkaQueue)(nil)
	_ logic.Queue = (*logic.MemoryQueue)(nil)
	_ job.Source  = (*logic.MemoryQueue)(nil)
)
