package testenv

import (
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/gomodule/redigo/redis"
	"github.com/stretchr/testify/require"
)

func TestRedisRoundTrip(t *testing.T) {
	r := StartRedis(t)
	c, err := redis.Dial("tcp", r.Addr, redis.DialConnectTimeout(time.Second))
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Do("SET", "k", "v")
	require.NoError(t, err)
	v, err := redis.String(c.Do("GET", "k"))
	require.NoError(t, err)
	require.Equal(t, "v", v)
}

func TestRedisStopStart(t *testing.T) {
	r := StartRedis(t)
	r.Stop()
	_, err := redis.Dial("tcp", r.Addr, redis.DialConnectTimeout(200*time.Millisecond))
	require.Error(t, err, "a stopped server refuses connections")
	r.Start()
	c, err := redis.Dial("tcp", r.Addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Send("PING"))
}

func TestRedisWipes(t *testing.T) {
	r := StartRedis(t)
	for _, w := range RedisWipes() {
		c, err := redis.Dial("tcp", r.Addr)
		require.NoError(t, err)
		_, err = c.Do("SET", "k", "v")
		require.NoError(t, err)
		c.Close()
		w.Wipe(r)
		c, err = redis.Dial("tcp", r.Addr)
		require.NoError(t, err)
		n, err := redis.Int(c.Do("DBSIZE"))
		require.NoError(t, err)
		require.Zero(t, n, w.Name)
		c.Close()
	}
}

func TestKafkaRoundTrip(t *testing.T) {
	k := StartKafka(t, "t")
	cfg := sarama.NewConfig()
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	p, err := sarama.NewSyncProducer(k.Brokers, cfg)
	require.NoError(t, err)
	defer p.Close()
	part, off, err := p.SendMessage(&sarama.ProducerMessage{Topic: "t", Key: sarama.StringEncoder("k"), Value: sarama.StringEncoder("hello")})
	require.NoError(t, err)

	c, err := sarama.NewConsumer(k.Brokers, sarama.NewConfig())
	require.NoError(t, err)
	defer c.Close()
	pc, err := c.ConsumePartition("t", part, off)
	require.NoError(t, err)
	defer pc.Close()
	select {
	case m := <-pc.Messages():
		require.Equal(t, "hello", string(m.Value))
		require.Equal(t, "k", string(m.Key))
	case <-time.After(10 * time.Second):
		t.Fatal("no record consumed within 10s")
	}
}
