package sessions.devservices;

import de.bwaldvogel.mongo.MongoBackend;
import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.backend.h2.H2Backend;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CountDownLatch;

/**
 * Runs mongo-java-server on 127.0.0.1 until SIGTERM.
 *
 * <pre>
 * Launcher --port N [--backend memory|h2] [--data DIR]
 * </pre>
 *
 * <p>{@code memory} keeps everything in the heap (lost on exit); {@code h2} keeps it in an H2
 * MVStore file under {@code --data}, so a stop and restart keeps the data, like a database.
 * The server announces MongoDB 4.4 (wire version 9): the Rust driver refuses anything older,
 * and the library's own version constants stop at wire version 8.
 */
public final class Launcher {
    /** MongoDB 4.4, the oldest server the mongodb 3.x Rust driver accepts. */
    private static final MongoVersion MONGO_4_4 =
            new MongoVersion() {
                @Override
                public List<Integer> getVersionArray() {
                    return List.of(4, 4, 0);
                }

                @Override
                public int getWireVersion() {
                    return 9;
                }
            };

    private Launcher() {}

    public static void main(String[] args) throws Exception {
        Integer port = null;
        String backendName = "memory";
        Path data = null;
        for (int i = 0; i < args.length; i++) {
            String value = i + 1 < args.length ? args[i + 1] : null;
            switch (args[i]) {
                case "--port" -> port = Integer.valueOf(required(args[i], value));
                case "--backend" -> backendName = required(args[i], value);
                case "--data" -> data = Path.of(required(args[i], value));
                case "--version" -> {
                    System.out.println("mongo-java-server " + serverVersion());
                    return;
                }
                default -> usage("unknown argument " + args[i]);
            }
            i++;
        }
        if (port == null) {
            usage("--port is required");
        }
        MongoBackend backend =
                switch (backendName) {
                    case "memory" -> new MemoryBackend();
                    case "h2" -> {
                        if (data == null) {
                            usage("--backend h2 needs --data DIR");
                        }
                        Files.createDirectories(data);
                        yield new H2Backend(data.resolve("mongo.mv").toString());
                    }
                    default -> {
                        usage("unknown backend " + backendName + " (memory or h2)");
                        yield null;
                    }
                };
        backend.version(MONGO_4_4);
        MongoServer server = new MongoServer(backend);
        server.bind("127.0.0.1", port);
        System.out.printf(
                "mongo-java-server %s (%s backend) listening on 127.0.0.1:%d%n",
                serverVersion(), backendName, port);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime()
                .addShutdownHook(
                        new Thread(
                                () -> {
                                    // Closes the backend too: the H2 file is written out.
                                    server.shutdown();
                                    stopped.countDown();
                                }));
        stopped.await();
    }

    private static String serverVersion() {
        String version = MongoServer.class.getPackage().getImplementationVersion();
        return version == null ? "1.47.0" : version;
    }

    private static String required(String flag, String value) {
        if (value == null) {
            usage(flag + " needs a value");
        }
        return value;
    }

    private static void usage(String problem) {
        System.err.println(problem);
        System.err.println("usage: Launcher --port N [--backend memory|h2] [--data DIR]");
        System.exit(2);
    }
}
