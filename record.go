package imcloud

// Record is one queue record as a consumer sees it: the encoded Message
// and where it sits in the queue. Offsets grow by one within a partition;
// committing offset N in a partition says every record up to and including
// N there was handled. logic's memory queue and job's Kafka consumer both
// hand out Records.
type Record struct {
	// Partition is the queue partition; records of one partition key
	// (one node, one room) share a partition and keep their order.
	Partition int32
	// Offset is the record's position in its partition.
	Offset int64
	// Key is the partition key the producer chose.
	Key []byte
	// Value is the encoded Message (Message.UnmarshalBinary).
	Value []byte
}
