// Producer for `make bench` (run as `java -cp 'kafka-libs/*' PacedProducer.java ...`, no build step).
//
// kafka-python spends ~30-40 µs of CPU per send: a 1M-message backlog of 1 KB messages takes minutes,
// and a steady 50,000 msg/s would need more than a core of this 2-core machine. The Java client
// needs a fraction of one. Each record's timestamp is its produce time (CreateTime), which the
// latency measurement subtracts from the time Doris acknowledged the load holding it.
//
// args: bootstrap topic rate count payload-file partitions [warmup-seconds]
//   rate: messages per second, 0 = as fast as possible (backlogs)
//   payload-file: one message per line, sent in order and round robin
//   record i goes to partition i % partitions
//   warmup-seconds: first send rate * warmup-seconds more records at the same pace, to the same
//     topic. A JVM starting up uses both cores of this machine for about two seconds (JIT), and
//     the consumer under test falls behind meanwhile; "measured_from_ms" in the output is the
//     CreateTime from which records count for the steady-state latency.
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class PacedProducer {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1];
        long rate = Long.parseLong(args[2]), count = Long.parseLong(args[3]);
        List<String> lines = Files.readAllLines(Paths.get(args[4]));
        int partitions = Integer.parseInt(args[5]);
        long warmup = args.length > 6 ? rate * Long.parseLong(args[6]) : 0;
        count += warmup;
        long measuredFrom = 0;
        byte[][] payloads = new byte[lines.size()][];
        for (int i = 0; i < payloads.length; i++) payloads[i] = lines.get(i).getBytes("UTF-8");

        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("acks", "all");
        p.put("linger.ms", "5");
        p.put("batch.size", "262144");
        p.put("compression.type", "none");
        p.put("key.serializer", ByteArraySerializer.class.getName());
        p.put("value.serializer", ByteArraySerializer.class.getName());
        AtomicLong failed = new AtomicLong();
        long sent = 0, t0 = System.nanoTime();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
            while (sent < count) {
                long due = rate <= 0 ? count
                        : Math.min(count, (System.nanoTime() - t0) * rate / 1_000_000_000L);
                while (sent < due) {
                    if (sent == warmup && measuredFrom == 0) measuredFrom = System.currentTimeMillis();
                    producer.send(new ProducerRecord<>(topic, (int) (sent % partitions), null,
                                                       payloads[(int) (sent % payloads.length)]),
                                  (md, e) -> { if (e != null) failed.incrementAndGet(); });
                    sent++;
                }
                if (sent < count) Thread.sleep(1);
            }
            producer.flush();
        }
        double seconds = (System.nanoTime() - t0) / 1e9;
        System.out.printf("{\"sent\": %d, \"warmup\": %d, \"measured_from_ms\": %d, \"failed\": %d, "
                          + "\"seconds\": %.3f}%n", sent, warmup, measuredFrom, failed.get(), seconds);
        System.exit(failed.get() == 0 ? 0 : 1);
    }
}
