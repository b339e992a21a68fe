// An image described in code: `./beta9 image build examples/image.ts:image`.
import { Image } from "beta9";

export const image = new Image()
  .run("mkdir -p /app && echo 'built by beta9' > /app/BUILD_INFO")
  .env({ APP_MODE: "example" });
