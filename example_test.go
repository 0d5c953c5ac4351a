package imcloud_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/imcloud/imcloud"
)

func ExampleRoomKey() {
	key := imcloud.RoomKey("live", "1000")
	fmt.Println(key)
	typ, id, err := imcloud.ParseRoomKey(key)
	fmt.Println(typ, id, err)
	_, _, err = imcloud.ParseRoomKey("live1000")
	fmt.Println(err)
	// Output:
	// live://1000
	// live 1000 <nil>
	// imcloud: invalid room key: "live1000"
}

// Encode a message for the queue and decode it on the other side.
func ExampleMessage_MarshalBinary() {
	accepted := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	m := imcloud.Message{
		ID:       imcloud.NewMessageID(),
		Kind:     imcloud.KindRoom,
		Op:       1000,
		Room:     imcloud.RoomKey("live", "1000"),
		Body:     []byte(`{"text":"hello"}`),
		Accepted: accepted,
		Expires:  accepted.Add(time.Minute),
	}
	data, _ := m.MarshalBinary()

	var got imcloud.Message
	if err := got.UnmarshalBinary(data); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(got.ID == m.ID, got.Kind, got.Op, got.Room, string(got.Body))
	fmt.Println(got.Expires.Sub(got.Accepted), got.Expired(accepted.Add(2*time.Minute)))
	// Output:
	// true room 1000 live://1000 {"text":"hello"}
	// 1m0s true
}

// A consumer sets aside messages from a newer writer instead of dropping them.
func ExampleMessage_UnmarshalBinary() {
	var m imcloud.Message
	err := m.UnmarshalBinary([]byte{9, 0}) // major version 9
	fmt.Println(errors.Is(err, imcloud.ErrNewerVersion))
	err = m.UnmarshalBinary([]byte{1, 0, 0x80})
	fmt.Println(errors.Is(err, imcloud.ErrMalformedMessage))
	// Output:
	// true
	// true
}
