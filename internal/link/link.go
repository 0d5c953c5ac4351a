// Package link is the wire format of the job -> cloud link, shared by the
// link server in cloud and the link client in job. It rides on protocol
// frames with ops no client ever sees (the link has its own listener):
//
//	job   -> cloud  OpHello     JSON Hello; must be the first frame
//	cloud -> job    OpChallenge JSON Challenge: the node's nonce
//	job   -> cloud  OpProof     JSON Proof: job knows the secret
//	cloud -> job    OpHelloAck  JSON HelloAck: the node knows it too;
//	                            Error set means refused, then close
//	job   -> cloud  OpDeliver   seq = request id; body = messages (AppendMessages)
//	cloud -> job    OpAck       seq = the request id; empty body = accepted,
//	                            otherwise the reason it was not
//
// Requests are pipelined: job may send many before the first ack, and acks
// may come in any order. The hello (hello.go) proves each side knows the
// shared secret without sending it.
package link

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/imcloud/imcloud"
)

// Link-only ops, far from any op a client uses.
const (
	OpHello    int32 = 0x4c4b0001
	OpHelloAck int32 = 0x4c4b0002
	OpDeliver  int32 = 0x4c4b0003
	OpAck      int32 = 0x4c4b0004
	// OpChallenge and OpProof are the hello's challenge and answer
	// (version 2); a version 1 hello has neither.
	OpChallenge int32 = 0x4c4b0005
	OpProof     int32 = 0x4c4b0006
)

// MaxFrameBody caps a link frame body on both sides (a large room batch
// fits; a corrupted length does not allocate gigabytes).
const MaxFrameBody = 64 << 20

// ErrMalformed is returned for a deliver body that cannot be split.
var ErrMalformed = errors.New("link: malformed deliver body")

// AppendMessages appends the deliver body for msgs: a uvarint count, then
// each message as a uvarint length and its encoding.
func AppendMessages(dst []byte, msgs []*imcloud.Message) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(msgs)))
	var scratch []byte
	for _, m := range msgs {
		scratch = m.AppendBinary(scratch[:0])
		dst = binary.AppendUvarint(dst, uint64(len(scratch)))
		dst = append(dst, scratch...)
	}
	return dst
}

// SplitMessages calls fn with each encoded message in a deliver body, in
// order, without copying. It stops at the first error fn returns.
func SplitMessages(body []byte, fn func(encoded []byte) error) error {
	count, n := binary.Uvarint(body)
	if n <= 0 {
		return ErrMalformed
	}
	body = body[n:]
	for i := uint64(0); i < count; i++ {
		size, n := binary.Uvarint(body)
		if n <= 0 || size > uint64(len(body)-n) {
			return fmt.Errorf("%w: message %d", ErrMalformed, i)
		}
		if err := fn(body[n : n+int(size)]); err != nil {
			return err
		}
		body = body[n+int(size):]
	}
	if len(body) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(body))
	}
	return nil
}
