/**
 * Messages JetStream delivered, which no actor's subscription expects. nats-server 2.9/2.10 checks neither a push
 * consumer's deliver subject nor the reply subject of a JetStream API request (a pull consumer's next-message request, a
 * direct get) against the rights of the client that named it: a client that may read a stream could have the server
 * deliver the stream's messages (bytes some actor wrote, e.g. its own KV key) to any subject of its account, a
 * command subject among them, past the publish rights that keep it off that subject. Every actor's subscription
 * (Bus.serve, Bus.subscribe, Bus.subscribeLatest) is for publications of actors, so a message that bears JetStream's
 * marks is dropped there:
 * - a consumer's delivery (push or pull) has the reply subject `$JS.ACK.<stream>.<consumer>...` (ack policy none too)
 *   and, as its subject, the subject it was stored under;
 * - flow control asks on `$JS.FC.<stream>...`;
 * - a direct get's answer carries the headers Nats-Stream, Nats-Sequence, Nats-Subject, Nats-Time-Stamp.
 * A stream message get answers JSON (`io.nats.jetstream.api.v1.stream_msg_get_response`) and a publish acknowledgement
 * `{"stream":...,"seq":...}`: neither decodes as a message of the protocol.
 */
import type { MsgHdrs } from '@nats-io/transport-node';

/** Why a received message is JetStream's (undefined: it is not). */
export function jetStreamOrigin(reply: string | undefined, headers: MsgHdrs | undefined): string | undefined {
  if (reply !== undefined && reply.startsWith('$JS.')) return reply.startsWith('$JS.ACK.') ? 'consumer delivery' : 'JetStream control message';
  if (headers?.has('Nats-Stream') || headers?.has('Nats-Sequence')) return 'stream message (direct get)';
  return undefined;
}
