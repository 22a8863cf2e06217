/* test_layers.c - every layer, initialiser and optimiser against values
   worked out by hand (in the comments next to them), not by running cnn.h.

   Tolerances: values that are exact in float (small integers, halves,
   quarters) must match to 1e-6; values that go through expf / tanhf / logs
   (correctly rounded to ~1 ulp, 6e-8 relative) must match the hand value,
   given to 10 digits, to 1e-6 absolute. Statistical checks (dropout rate,
   initialiser spread) state their own bounds, each several standard
   deviations wide, with the seed fixed so they are deterministic. */
#define CNN_IMPLEMENTATION
#include "../cnn.h"
#include "test.h"

#define EXACT 1e-6 /* for values exact in float or given to 10 digits */

/* Checks n values against expected ones; prints the first few mismatches. */
static int check_values(const char *what, const float *actual, const double *expected, int n, double tol)
{
    int i, bad = 0;
    for (i = 0; i < n; i++) {
        double d = fabs((double)actual[i] - expected[i]);
        if (!(d <= tol)) {
            if (bad < 4) printf("    %s[%d] = %.9g, expected %.9g (tolerance %.1g)\n", what, i, (double)actual[i], expected[i], tol);
            bad++;
        }
    }
    return bad;
}

#define CHECK_VALUES(what, actual, expected, n, tol)                                                    \
    do {                                                                                                 \
        int bad_ = check_values(what, actual, expected, n, tol);                                         \
        CHECK(bad_ == 0, "%s: %d of %d values wrong", what, bad_, (int)(n));                             \
    } while (0)

static int build(cnn_model *model, int max_batch)
{
    cnn_result result = cnn_model_build(model, max_batch);
    CHECK(result == CNN_OK, "build failed: %s", model->error.message);
    return result == CNN_OK;
}

/* ---------------------------------------------------------------- conv2d */

/* A 1x5x5 input of 1..25, one 3x3 kernel, bias 0.5, stride 2, padding 1:
   a 3x3 output (side (5 + 2 - 3) / 2 + 1 = 3). The kernel is asymmetric, so
   a convolution that flips it (true convolution instead of PyTorch's
   cross-correlation) or mixes up rows and columns gives other numbers.

       x (row r, col c = 5r + c + 1)        w
        1  2  3  4  5                      1  2  0
        6  7  8  9 10                      0  1 -1
       11 12 13 14 15                     -1  0  3
       16 17 18 19 20
       21 22 23 24 25
   Output (i, j) reads rows 2i-1..2i+1 and cols 2j-1..2j+1; -1 and 5 are
   padding (zero), so only the products inside the image count:
   (0,0) rows -1..1, cols -1..1: w[1][1]*1 + w[1][2]*2 + w[2][1]*6 + w[2][2]*7
                               = 1 - 2 + 0 + 21 = 20                -> 20.5
   (0,1) cols 1..3: row 0 [2 3 4].[0 1 -1] = -1, row 1 [7 8 9].[-1 0 3] = 20
                               = 19                                 -> 19.5
   (0,2) cols 3..5: row 0 [4 5].[0 1] = 5, row 1 [9 10].[-1 0] = -9 = -4 -> -3.5
   (1,0) rows 1..3, cols -1..1: row 1 [6 7].[2 0] = 12, row 2 [11 12].[1 -1]
         = -1, row 3 [16 17].[0 3] = 51; 12 - 1 + 51 = 62           -> 62.5
   (1,1) rows 1..3, cols 1..3: [7 8 9].[1 2 0] = 23, [12 13 14].[0 1 -1] = -1,
         [17 18 19].[-1 0 3] = 40; 23 - 1 + 40 = 62                -> 62.5
   (1,2) cols 3..5: [9 10].[1 2] = 29, [14 15].[0 1] = 15, [19 20].[-1 0] = -19
         = 25                                                       -> 25.5
   (2,0) rows 3..5, cols -1..1: [16 17].[2 0] = 32, [21 22].[1 -1] = -1 = 31 -> 31.5
   (2,1) cols 1..3: [17 18 19].[1 2 0] = 53, [22 23 24].[0 1 -1] = -1 = 52 -> 52.5
   (2,2) cols 3..5: [19 20].[1 2] = 59, [24 25].[0 1] = 25 = 84     -> 84.5
   Checked through the model (the fast im2col path) and the reference loops. */
TEST(conv2d_stride_padding_by_hand)
{
    static const float kernel[9] = {1, 2, 0, 0, 1, -1, -1, 0, 3};
    static const double expected[9] = {20.5, 19.5, -3.5, 62.5, 62.5, 25.5, 31.5, 52.5, 84.5};
    float x[25], y[9];
    cnn_model model;
    int i;
    for (i = 0; i < 25; i++) x[i] = (float)(i + 1);
    cnn_model_init(&model, 1, 5, 5, 1);
    cnn_add_conv2d(&model, 1, 3, 2, 1);
    if (!build(&model, 1)) return;
    CHECK(model.layers[0].out.c == 1 && model.layers[0].out.h == 3 && model.layers[0].out.w == 3,
          "output shape (%d, %d, %d), expected (1, 3, 3)", model.layers[0].out.c, model.layers[0].out.h,
          model.layers[0].out.w);
    memcpy(model.layers[0].weight, kernel, sizeof kernel);
    model.layers[0].bias[0] = 0.5f;
    cnn_model_forward(&model, x, 1, CNN_MODE_EVAL);
    CHECK_VALUES("conv s2 p1 (fast)", cnn_model_output(&model), expected, 9, EXACT);
    cnn__conv2d_forward(&model.layers[0], 1, x, y); /* the plain loops */
    CHECK_VALUES("conv s2 p1 (reference)", y, expected, 9, EXACT);
    cnn_model_free(&model);
}

/* A stride that does not tile is floored, as PyTorch does: a 4x4 input of
   1..16, the kernel above, bias 0.5, stride 2, padding 1 gives 2x2
   ((4 + 2 - 3) / 2 + 1 = 2, rounded down); the bottom and right padding
   rows are in no window.
        1  2  3  4
        5  6  7  8
        9 10 11 12
       13 14 15 16
   (0,0) rows -1..1, cols -1..1: [1 2].[1 -1] + [5 6].[0 3] = -1 + 18 = 17  -> 17.5
   (0,1) cols 1..3: [2 3 4].[0 1 -1] = -1, [6 7 8].[-1 0 3] = 18 = 17     -> 17.5
   (1,0) rows 1..3, cols -1..1: [5 6].[2 0] = 10, [9 10].[1 -1] = -1,
         [13 14].[0 3] = 42; 51                                         -> 51.5
   (1,1) cols 1..3: [6 7 8].[1 2 0] = 20, [10 11 12].[0 1 -1] = -1,
         [14 15 16].[-1 0 3] = 34; 53                                    -> 53.5 */
TEST(conv2d_floors_untiled_stride)
{
    static const float kernel[9] = {1, 2, 0, 0, 1, -1, -1, 0, 3};
    static const double expected[4] = {17.5, 17.5, 51.5, 53.5};
    float x[16], y[4];
    cnn_model model;
    int i;
    for (i = 0; i < 16; i++) x[i] = (float)(i + 1);
    cnn_model_init(&model, 1, 4, 4, 1);
    CHECK(cnn_add_conv2d(&model, 1, 3, 2, 1) == CNN_OK, "4x4, K3, S2, P1 refused: %s", model.error.message);
    if (!build(&model, 1)) return;
    CHECK(model.layers[0].out.h == 2 && model.layers[0].out.w == 2, "output %dx%d, expected 2x2", model.layers[0].out.h,
          model.layers[0].out.w);
    memcpy(model.layers[0].weight, kernel, sizeof kernel);
    model.layers[0].bias[0] = 0.5f;
    cnn_model_forward(&model, x, 1, CNN_MODE_EVAL);
    CHECK_VALUES("conv floored (fast)", cnn_model_output(&model), expected, 4, EXACT);
    cnn__conv2d_forward(&model.layers[0], 1, x, y); /* the plain loops */
    CHECK_VALUES("conv floored (reference)", y, expected, 4, EXACT);
    cnn_model_free(&model);
}

/* Two input channels, two filters, 2x2 kernel, stride 1, no padding, on
   3x3 images: checks the weight layout (OC, C, K, K) and the sum over
   channels, forward and backward.
       x0  1 2 3     x1  2 0 1
           4 5 6         1 3 0
           7 8 9         0 1 2
   filter 0: w[0][0] = [1 0; 0 1], w[0][1] = [0 1; -1 0], b0 = 1
     y0(i,j) = 1 + x0(i,j) + x0(i+1,j+1) + x1(i,j+1) - x1(i+1,j)
     (0,0) 1 + 1 + 5 + 0 - 1 = 6      (0,1) 1 + 2 + 6 + 1 - 3 = 7
     (1,0) 1 + 4 + 8 + 3 - 0 = 16     (1,1) 1 + 5 + 9 + 0 - 1 = 14
   filter 1: w[1][0] = [1 1; 1 1], w[1][1] = [2 0; 0 -1], b1 = -2
     y1(i,j) = -2 + (sum of the x0 2x2 block) + 2 x1(i,j) - x1(i+1,j+1)
     (0,0) -2 + 12 + 4 - 3 = 11       (0,1) -2 + 16 + 0 - 0 = 14
     (1,0) -2 + 24 + 2 - 1 = 23       (1,1) -2 + 28 + 6 - 2 = 30
   Backward with dy = 1 everywhere:
     db = (4, 4): four outputs per filter.
     dw[o][c][u][v] = sum of the 2x2 block of x_c at offset (u, v), the same
     for both filters: x0 blocks 12 16 24 28, x1 blocks (2+0+1+3) 6,
     (0+1+3+0) 4, (1+3+0+1) 5, (3+0+1+2) 6.
     dx_c = the sum over filters of w[o][c] (S0 = [2 1; 1 2] for c = 0,
     S1 = [2 1; -1 -1] for c = 1) spread over the windows covering each
     pixel: corner (0,0) gets S[0][0], edge (0,1) S[0][0] + S[0][1], centre
     all four, and so on:
       dx0 = 2 3 1      dx1 =  2  3  1
             3 6 3             1  1  0
             1 3 2            -1 -2 -1 */
TEST(conv2d_two_channels_by_hand)
{
    static const float x[18] = {1, 2, 3, 4, 5, 6, 7, 8, 9, /* channel 1 */ 2, 0, 1, 1, 3, 0, 0, 1, 2};
    static const float weight[16] = {1, 0, 0, 1, 0, 1, -1, 0, /* filter 1 */ 1, 1, 1, 1, 2, 0, 0, -1};
    static const double expected_y[8] = {6, 7, 16, 14, 11, 14, 23, 30};
    static const double expected_db[2] = {4, 4};
    static const double expected_dw[16] = {12, 16, 24, 28, 6, 4, 5, 6, 12, 16, 24, 28, 6, 4, 5, 6};
    static const double expected_dx[18] = {2, 3, 1, 3, 6, 3, 1, 3, 2, 2, 3, 1, 1, 1, 0, -1, -2, -1};
    float dy[8];
    cnn_model model;
    cnn_layer *conv;
    int i;
    for (i = 0; i < 8; i++) dy[i] = 1.0f;
    cnn_model_init(&model, 2, 3, 3, 1);
    cnn_add_conv2d(&model, 2, 2, 1, 0);
    if (!build(&model, 1)) return;
    conv = &model.layers[0];
    memcpy(conv->weight, weight, sizeof weight);
    conv->bias[0] = 1.0f;
    conv->bias[1] = -2.0f;
    cnn_model_forward(&model, x, 1, CNN_MODE_EVAL);
    CHECK_VALUES("conv 2ch y", cnn_model_output(&model), expected_y, 8, EXACT);
    cnn_model_zero_grad(&model);
    cnn_model_backward_from(&model, dy);
    CHECK_VALUES("conv 2ch db", conv->bias_grad, expected_db, 2, EXACT);
    CHECK_VALUES("conv 2ch dw", conv->weight_grad, expected_dw, 16, EXACT);
    CHECK_VALUES("conv 2ch dx", model.activation_grads[0].data, expected_dx, 18, EXACT);
    cnn_model_free(&model);
}

/* ---------------------------------------------------------------- max pool */

/* Runs a one-layer pool model forward on x and backward from dy. */
static int pool_run(cnn_model *model, int max, int c, int h, int w, int size, int stride, const float *x, const float *dy)
{
    cnn_model_init(model, c, h, w, 1);
    if (max) cnn_add_max_pool(model, size, stride);
    else cnn_add_avg_pool(model, size, stride);
    if (!build(model, 1)) return 0;
    cnn_model_forward(model, x, 1, CNN_MODE_EVAL);
    cnn_model_backward_from(model, dy);
    return 1;
}

/* 4x4 input, 2x2 windows, stride 2:
       1 3 | 2 0        window maxima: top-left 4 at (1,0), top-right 8 at
       4 2 | 8 1        (1,2), bottom-left 9 at (3,1), bottom-right 7 at (2,3)
       ----+----        -> y = 4 8 / 9 7.
       5 0 | 1 7        Backward with dy = 10 20 / 30 40: each value goes to
       2 9 | 6 3        its window's maximum only, zeros everywhere else. */
TEST(max_pool_forward_and_routing)
{
    static const float x[16] = {1, 3, 2, 0, 4, 2, 8, 1, 5, 0, 1, 7, 2, 9, 6, 3};
    static const float dy[4] = {10, 20, 30, 40};
    static const double expected_y[4] = {4, 8, 9, 7};
    static const double expected_dx[16] = {0, 0, 0, 0, 10, 0, 20, 0, 0, 0, 0, 40, 0, 30, 0, 0};
    cnn_model model;
    if (pool_run(&model, 1, 1, 4, 4, 2, 2, x, dy)) {
        CHECK_VALUES("max pool y", cnn_model_output(&model), expected_y, 4, EXACT);
        CHECK_VALUES("max pool dx", model.activation_grads[0].data, expected_dx, 16, EXACT);
    }
    cnn_model_free(&model);
}

/* Ties: the gradient goes to the FIRST maximum in row-major order, as
   PyTorch does, and to exactly one element per window.
       5  5 | 1  7      top-left: all four are 5 -> (0,0)
       5  5 | 7  2      top-right: 7 at (0,3) and (1,2) -> (0,3)
       -----+-----      bottom-left: all four are -3 -> (2,0)
      -3 -3 |-1  4      bottom-right: 4 at (2,3), (3,2), (3,3) -> (2,3)
      -3 -3 | 4  4
   dy = 1 2 / 3 4 -> dx(0,0) = 1, dx(0,3) = 2, dx(2,0) = 3, dx(2,3) = 4. */
TEST(max_pool_ties_go_to_first_maximum)
{
    static const float x[16] = {5, 5, 1, 7, 5, 5, 7, 2, -3, -3, -1, 4, -3, -3, 4, 4};
    static const float dy[4] = {1, 2, 3, 4};
    static const double expected_y[4] = {5, 7, -3, 4};
    static const double expected_dx[16] = {1, 0, 0, 2, 0, 0, 0, 0, 3, 0, 0, 4, 0, 0, 0, 0};
    cnn_model model;
    if (pool_run(&model, 1, 1, 4, 4, 2, 2, x, dy)) {
        const float *dx = model.activation_grads[0].data;
        int i, nonzero = 0;
        CHECK_VALUES("max pool ties y", cnn_model_output(&model), expected_y, 4, EXACT);
        CHECK_VALUES("max pool ties dx", dx, expected_dx, 16, EXACT);
        for (i = 0; i < 16; i++) nonzero += dx[i] != 0.0f;
        CHECK(nonzero == 4, "%d inputs received gradient, expected exactly one per window (4)", nonzero);
    }
    cnn_model_free(&model);
}

/* Overlapping 3x3 windows with stride 2 on 5x5 (output 2x2): windows
   share row 2 and column 2. A maximum in a shared place collects the
   gradient of every window it wins.
    1  2  3  4  5      top-left (rows 0-2, cols 0-2) and top-right (rows 0-2,
    6  7 50  8  9      cols 2-4) share 50 at (1,2); bottom-left (rows 2-4,
   10 11 12 13 14      cols 0-2) has 40 at (4,0), bottom-right 30 at (4,4).
   15 16 17 18 19      y = 50 50 / 40 30; dy = 1 10 / 100 1000 ->
   40 20 21 22 30      dx(1,2) = 1 + 10 = 11, dx(4,0) = 100, dx(4,4) = 1000.
   And the centre (2,2), shared by all four windows: with 100 there every
   window's maximum is it and it receives 1 + 10 + 100 + 1000 = 1111. */
TEST(max_pool_overlapping_windows_add_up)
{
    static const float dy[4] = {1, 10, 100, 1000};
    float x[25];
    double expected_dx[25];
    static const double expected_y[4] = {50, 50, 40, 30};
    static const double centre_y[4] = {100, 100, 100, 100};
    static const float edge_x[25] = {1, 2, 3, 4, 5, 6, 7, 50, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 40, 20, 21, 22, 30};
    cnn_model model;
    int i;
    for (i = 0; i < 25; i++) expected_dx[i] = 0.0;
    expected_dx[1 * 5 + 2] = 11;
    expected_dx[4 * 5 + 0] = 100;
    expected_dx[4 * 5 + 4] = 1000;
    if (pool_run(&model, 1, 1, 5, 5, 3, 2, edge_x, dy)) {
        CHECK_VALUES("overlapping max pool y", cnn_model_output(&model), expected_y, 4, EXACT);
        CHECK_VALUES("overlapping max pool dx", model.activation_grads[0].data, expected_dx, 25, EXACT);
    }
    cnn_model_free(&model);

    for (i = 0; i < 25; i++) x[i] = (float)(i + 1), expected_dx[i] = 0.0;
    x[2 * 5 + 2] = 100.0f;
    expected_dx[2 * 5 + 2] = 1111;
    if (pool_run(&model, 1, 1, 5, 5, 3, 2, x, dy)) {
        CHECK_VALUES("shared centre max pool y", cnn_model_output(&model), centre_y, 4, EXACT);
        CHECK_VALUES("shared centre max pool dx", model.activation_grads[0].data, expected_dx, 25, EXACT);
    }
    cnn_model_free(&model);
}

/* ---------------------------------------------------------------- average pool */

/* Same 4x4 input as above, 2x2 windows, stride 2:
     y = (1+3+4+2)/4 = 2.5, (2+0+8+1)/4 = 2.75, (5+0+2+9)/4 = 4, (1+7+6+3)/4 = 4.25
   Backward dy = 4 8 / 12 16: every input of a window gets dy / 4 = 1, 2, 3, 4.
   Then 3x3 windows, stride 2, on 5x5 of 1..25 (overlapping): the mean of a
   3x3 block of this linear ramp is its centre, (1,1) = 7, (1,3) = 9,
   (3,1) = 17, (3,3) = 19; dy = 9 18 / 27 36 gives dy / 9 = 1, 2, 3, 4 to
   every input of each window, summed where windows overlap: row 2 and
   column 2 are shared, the centre (2,2) is in all four: 1+2+3+4 = 10. */
TEST(avg_pool_values_and_gradient)
{
    static const float x[16] = {1, 3, 2, 0, 4, 2, 8, 1, 5, 0, 1, 7, 2, 9, 6, 3};
    static const float dy[4] = {4, 8, 12, 16};
    static const double expected_y[4] = {2.5, 2.75, 4, 4.25};
    static const double expected_dx[16] = {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4};
    static const float dy3[4] = {9, 18, 27, 36};
    static const double expected_y3[4] = {7, 9, 17, 19};
    static const double expected_dx3[25] = {1, 1, 3, 2, 2,
                                            1, 1, 3, 2, 2,
                                            4, 4, 10, 6, 6,
                                            3, 3, 7, 4, 4,
                                            3, 3, 7, 4, 4};
    float ramp[25];
    cnn_model model;
    int i;
    if (pool_run(&model, 0, 1, 4, 4, 2, 2, x, dy)) {
        CHECK_VALUES("avg pool y", cnn_model_output(&model), expected_y, 4, EXACT);
        CHECK_VALUES("avg pool dx", model.activation_grads[0].data, expected_dx, 16, EXACT);
    }
    cnn_model_free(&model);
    for (i = 0; i < 25; i++) ramp[i] = (float)(i + 1);
    /* 1/9 is not exact in float: allow a few ulp of 19 */
    if (pool_run(&model, 0, 1, 5, 5, 3, 2, ramp, dy3)) {
        CHECK_VALUES("avg pool 3/2 y", cnn_model_output(&model), expected_y3, 4, 1e-5);
        CHECK_VALUES("avg pool 3/2 dx", model.activation_grads[0].data, expected_dx3, 25, 1e-5);
    }
    cnn_model_free(&model);
}

/* ---------------------------------------------------------------- padded pools, ceil mode */

/* Runs a one-layer pool model (any window, padding, ceil mode) forward on
   x and backward from dy. */
static int padded_pool_run(cnn_model *model, int max, int h, int w, int kernel, int stride, int padding, int ceil_mode,
                           const float *x, const float *dy)
{
    cnn_layer_desc desc;
    memset(&desc, 0, sizeof desc);
    desc.type = max ? CNN_LAYER_MAX_POOL : CNN_LAYER_AVG_POOL;
    desc.kernel = kernel; desc.stride = stride; desc.padding = padding; desc.ceil_mode = ceil_mode;
    cnn_model_init(model, 1, h, w, 1);
    cnn_model_add(model, &desc);
    if (!build(model, 1)) return 0;
    cnn_model_forward(model, x, 1, CNN_MODE_EVAL);
    cnn_model_backward_from(model, dy);
    return 1;
}

/* Max pool 3x3, stride 2, padding 1 on a 4x4 input of -1..-16: the padding
   never wins, even against negative values (as zeros it would win every
   window). 2x2 windows ((4 + 2 - 3) / 2 + 1):
   (0,0) covers -1 -2 / -5 -6 -> -1     (0,1) -2 -3 -4 / -6 -7 -8 -> -2
   (1,0) -5 -6 / -9 -10 / -13 -14 -> -5 (1,1) rows 1..3, cols 1..3 -> -6
   dy = 1 2 / 3 4 goes to those four inputs. */
TEST(max_pool_padding_never_wins)
{
    static const float dy[4] = {1, 2, 3, 4};
    static const double expected_y[4] = {-1, -2, -5, -6};
    double expected_dx[16];
    float x[16];
    cnn_model model;
    int i;
    for (i = 0; i < 16; i++) x[i] = -(float)(i + 1), expected_dx[i] = 0.0;
    expected_dx[0] = 1; expected_dx[1] = 2; expected_dx[4] = 3; expected_dx[5] = 4;
    if (padded_pool_run(&model, 1, 4, 4, 3, 2, 1, 0, x, dy)) {
        CHECK(model.layers[0].out.h == 2 && model.layers[0].out.w == 2, "output %dx%d", model.layers[0].out.h, model.layers[0].out.w);
        CHECK_VALUES("padded max pool y", cnn_model_output(&model), expected_y, 4, EXACT);
        CHECK_VALUES("padded max pool dx", model.activation_grads[0].data, expected_dx, 16, EXACT);
    }
    cnn_model_free(&model);
}

/* Average pools count the padding in the divisor (PyTorch's
   count_include_pad), but not what a ceil-mode window hangs past it.
   2x2, stride 2, padding 1, ceil mode on a 3x3 input of 1..9: ceil((3 + 2
   - 2) / 2) + 1 = 3 windows a side, but the third would start in the
   bottom (right) padding and is dropped: 2x2. Every window is 2x2 of the
   padded input, divisor 4:
     (0,0) = 1 / 4 = 0.25, (0,1) = (2 + 3) / 4 = 1.25,
     (1,0) = (4 + 7) / 4 = 2.75, (1,1) = (5 + 6 + 8 + 9) / 4 = 7.
   3x3, stride 2, padding 1, ceil mode on a 4x4 input of 1..16: 3x3 windows
   ((4 + 2 - 3) / 2 = 1.5, rounded up, + 1); the last window of a row
   starts at column 3, covers column 3, the padding column 4 and column 5,
   past the padded input: its divisor counts 2 columns.
     (0,0) = (1 + 2 + 5 + 6) / 9 = 14 / 9, (0,1) = (2+3+4 + 6+7+8) / 9 = 30 / 9,
     (0,2) = (4 + 8) / (3 * 2) = 2, (1,1) = rows 1..3, cols 1..3 = 99 / 9 = 11,
     (2,2) = 16 / (2 * 2) = 4, and so on (PyTorch gives the same 9 values).
   Backward with dy = 36 everywhere: each input gets 36 / divisor from
   every window that covers it. Input (3,3) is in windows (1,1), (1,2),
   (2,1) and (2,2), of divisors 9, 6, 6 and 4: 4 + 6 + 6 + 9 = 25; (0,0)
   is in (0,0) only: 4. */
TEST(avg_pool_padding_and_ceil_mode)
{
    static const float dy4[4] = {4, 4, 4, 4};
    static const double expected_y[4] = {0.25, 1.25, 2.75, 7};
    static const double expected_dx[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1}; /* each input in one window of divisor 4 */
    static const double expected_y3[9] = {14.0 / 9, 30.0 / 9, 2, 57.0 / 9, 11, 6, 4.5, 7.5, 4};
    float x[16], dy[9];
    cnn_model model;
    int i;
    for (i = 0; i < 16; i++) x[i] = (float)(i + 1);
    for (i = 0; i < 9; i++) dy[i] = 36.0f;
    if (padded_pool_run(&model, 0, 3, 3, 2, 2, 1, 1, x, dy4)) {
        CHECK(model.layers[0].out.h == 2 && model.layers[0].out.w == 2, "output %dx%d", model.layers[0].out.h, model.layers[0].out.w);
        CHECK_VALUES("avg pool 2/2 p1 ceil y", cnn_model_output(&model), expected_y, 4, EXACT);
        CHECK_VALUES("avg pool 2/2 p1 ceil dx", model.activation_grads[0].data, expected_dx, 9, EXACT);
    }
    cnn_model_free(&model);
    if (padded_pool_run(&model, 0, 4, 4, 3, 2, 1, 1, x, dy)) {
        const float *dx = model.activation_grads[0].data;
        CHECK(model.layers[0].out.h == 3 && model.layers[0].out.w == 3, "output %dx%d", model.layers[0].out.h, model.layers[0].out.w);
        CHECK_VALUES("avg pool 3/2 p1 ceil y", cnn_model_output(&model), expected_y3, 9, 1e-5);
        CHECK(fabs(dx[0] - 4.0) <= 1e-5 && fabs(dx[15] - 25.0) <= 1e-5, "dx(0,0) = %g, expected 4; dx(3,3) = %g, expected 25",
              (double)dx[0], (double)dx[15]);
    }
    cnn_model_free(&model);
}

/* ---------------------------------------------------------------- global average pooling */

/* (2, 2, 3) -> (2): channel 0 of 1..6 has mean 3.5, channel 1 of five
   zeros and a 12 has mean 2. Backward dy = (6, 12): every input of a
   channel gets dy / 6 = 1 and 2. */
TEST(global_avg_pool_by_hand)
{
    static const float x[12] = {1, 2, 3, 4, 5, 6, 0, 0, 0, 0, 0, 12};
    static const float dy[2] = {6, 12};
    static const double expected_y[2] = {3.5, 2};
    static const double expected_dx[12] = {1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2};
    cnn_model model;
    cnn_model_init(&model, 2, 2, 3, 1);
    cnn_add_global_avg_pool(&model);
    if (build(&model, 1)) {
        CHECK(model.layers[0].out.c == 2 && model.layers[0].out.h == 1 && model.layers[0].out.w == 1, "output (%d, %d, %d)",
              model.layers[0].out.c, model.layers[0].out.h, model.layers[0].out.w);
        cnn_model_forward(&model, x, 1, CNN_MODE_EVAL);
        CHECK_VALUES("global avg pool y", cnn_model_output(&model), expected_y, 2, EXACT);
        cnn_model_backward_from(&model, dy);
        CHECK_VALUES("global avg pool dx", model.activation_grads[0].data, expected_dx, 12, EXACT);
    }
    cnn_model_free(&model);
}

/* ---------------------------------------------------------------- batch norm */

/* One feature, a batch of x = 1, 3, 5, 7, gamma 2, beta 0.5. Training:
   mean 4, variance (9 + 1 + 1 + 9) / 4 = 5 (the biased one), s = sqrt(5 +
   1e-5) = 2.2360702; xhat = (x - 4) / s = -1.3416394, -0.4472131, ...;
   y = 2 xhat + 0.5 = -2.1832788897, -0.3944262966, 1.3944262966,
   3.1832788897. Running mean 0.1 * 4 = 0.4, running variance 0.9 * 1 +
   0.1 * 5 * 4/3 (the unbiased one) = 1.5666666667.
   Backward with dy = 1, 0, 0, 0: dbeta = 1, dgamma = xhat[0] =
   -1.3416394449, dx = (gamma / s) (dy - mean dy - xhat mean(dy xhat)) =
   0.2683286940, -0.3577702503, -0.0894428980, 0.1788844543.
   Evaluation then uses the running statistics: y = 2 (x - 0.4) /
   sqrt(1.5666766667) + 0.5 = 1.4587194946, 4.6544511432, 7.8501827918,
   11.0459144404; dx = 2 / sqrt(1.5666766667) dy = 1.5978658243 at the
   first, dgamma = (1 - 0.4) / sqrt(1.5666766667) = 0.4793597473. The
   numbers are PyTorch's (F.batch_norm, float64). */
TEST(batch_norm_by_hand)
{
    static const float x[4] = {1, 3, 5, 7}, dy[4] = {1, 0, 0, 0};
    static const double train_y[4] = {-2.1832788897, -0.3944262966, 1.3944262966, 3.1832788897};
    static const double train_dx[4] = {0.2683286940, -0.3577702503, -0.0894428980, 0.1788844543};
    static const double eval_y[4] = {1.4587194946, 4.6544511432, 7.8501827918, 11.0459144404};
    static const double eval_dx[4] = {1.5978658243, 0, 0, 0};
    static const double running[2] = {0.4, 1.5666666667}, train_dgamma = -1.3416394449, eval_dgamma = 0.4793597473;
    cnn_model model;
    cnn_layer *bn;
    float stats[2];
    cnn_model_init(&model, 1, 1, 1, 1);
    cnn_add_batch_norm(&model);
    if (!build(&model, 4)) return;
    bn = &model.layers[0];
    CHECK(bn->weight[0] == 1.0f && bn->bias[0] == 0.0f && bn->running_mean[0] == 0.0f && bn->running_var[0] == 1.0f,
          "starts as gamma %g, beta %g, mean %g, variance %g; expected 1, 0, 0, 1", (double)bn->weight[0], (double)bn->bias[0],
          (double)bn->running_mean[0], (double)bn->running_var[0]);
    bn->weight[0] = 2.0f;
    bn->bias[0] = 0.5f;
    cnn_model_forward(&model, x, 4, CNN_MODE_TRAIN);
    CHECK_VALUES("batch norm train y", cnn_model_output(&model), train_y, 4, 2 * EXACT);
    stats[0] = bn->running_mean[0];
    stats[1] = bn->running_var[0];
    CHECK_VALUES("batch norm running statistics", stats, running, 2, EXACT);
    CHECK(bn->batches_tracked == 1, "batches_tracked %lu", (unsigned long)bn->batches_tracked);
    cnn_model_zero_grad(&model);
    cnn_model_backward_from(&model, dy);
    CHECK_VALUES("batch norm train dx", model.activation_grads[0].data, train_dx, 4, EXACT);
    CHECK_VALUES("batch norm train dgamma", bn->weight_grad, &train_dgamma, 1, EXACT);
    CHECK(bn->bias_grad[0] == 1.0f, "dbeta %g, expected 1", (double)bn->bias_grad[0]);

    cnn_model_forward(&model, x, 4, CNN_MODE_EVAL);
    CHECK_VALUES("batch norm eval y", cnn_model_output(&model), eval_y, 4, 2 * EXACT);
    CHECK(bn->batches_tracked == 1 && bn->running_mean[0] == stats[0] && bn->running_var[0] == stats[1],
          "evaluation changed the running statistics");
    cnn_model_zero_grad(&model);
    cnn_model_backward_from(&model, dy);
    CHECK_VALUES("batch norm eval dx", model.activation_grads[0].data, eval_dx, 4, EXACT);
    CHECK_VALUES("batch norm eval dgamma", bn->weight_grad, &eval_dgamma, 1, EXACT);
    cnn_model_free(&model);
}

/* ---------------------------------------------------------------- residual blocks */

/* begin; relu; end: y = relu(x) + x. x = (-2, 3) -> y = (-2, 6); backward
   dy = (1, 1): dx = relu' dy + dy = (0 + 1, 1 + 1) = (1, 2).
   Then a block whose body changes the shape: on a (1, 2, 2) input
   [1 2; 3 4], the body avg pool 2/2 gives (1, 1, 1) = 2.5; end adds a 1x1
   projection of stride 2 (the smallest that maps 2 to 1), which reads
   x(0,0) = 1 only: with weight 3 and bias 0.5, y = 2.5 + 3 * 1 + 0.5 = 6.
   Backward dy = 1: dweight = x(0,0) = 1, dbias = 1, and dx = 1/4 from the
   pool everywhere, plus 3 at (0,0) from the projection: [3.25 0.25; 0.25 0.25]. */
TEST(residual_by_hand)
{
    static const float x[2] = {-2, 3}, dy[2] = {1, 1}, image[4] = {1, 2, 3, 4}, one = 1;
    static const double expected_y[2] = {-2, 6}, expected_dx[2] = {1, 2};
    static const double projected_y = 6, projected_dx[4] = {3.25, 0.25, 0.25, 0.25};
    cnn_model model;
    cnn_model_init(&model, 1, 1, 2, 1);
    cnn_add_residual_begin(&model);
    cnn_add_relu(&model);
    cnn_add_residual_end(&model, CNN_INIT_DEFAULT);
    if (build(&model, 1)) {
        CHECK(model.layers[2].weight_count == 0, "the identity skip has %lu weights", (unsigned long)model.layers[2].weight_count);
        cnn_model_forward(&model, x, 1, CNN_MODE_EVAL);
        CHECK_VALUES("residual y", cnn_model_output(&model), expected_y, 2, EXACT);
        cnn_model_backward_from(&model, dy);
        CHECK_VALUES("residual dx", model.activation_grads[0].data, expected_dx, 2, EXACT);
    }
    cnn_model_free(&model);

    cnn_model_init(&model, 1, 2, 2, 1);
    cnn_add_residual_begin(&model);
    cnn_add_avg_pool(&model, 2, 2);
    cnn_add_residual_end(&model, CNN_INIT_DEFAULT);
    if (build(&model, 1)) {
        cnn_layer *end = &model.layers[2];
        CHECK(end->desc.kernel == 1 && end->desc.stride == 2 && end->weight_count == 1 && end->bias_count == 1,
              "projection %dx%d stride %d, %lu + %lu parameters; expected 1x1 stride 2, 1 + 1", end->desc.kernel,
              end->desc.kernel, end->desc.stride, (unsigned long)end->weight_count, (unsigned long)end->bias_count);
        end->weight[0] = 3.0f;
        end->bias[0] = 0.5f;
        cnn_model_forward(&model, image, 1, CNN_MODE_EVAL);
        CHECK_VALUES("projected residual y", cnn_model_output(&model), &projected_y, 1, EXACT);
        cnn_model_zero_grad(&model);
        cnn_model_backward_from(&model, &one);
        CHECK_VALUES("projected residual dx", model.activation_grads[0].data, projected_dx, 4, EXACT);
        CHECK(end->weight_grad[0] == 1.0f && end->bias_grad[0] == 1.0f, "projection dweight %g, dbias %g; expected 1, 1",
              (double)end->weight_grad[0], (double)end->bias_grad[0]);
    }
    cnn_model_free(&model);
}

/* ---------------------------------------------------------------- softmax + cross-entropy */

/* softmax({1000, 1001, 1002}) = softmax({0, 1, 2}) (shift invariance) =
   (1, e, e^2) / S with S = 1 + e + e^2 = 1 + 2.7182818285 + 7.3890560989
   = 11.1073379274:  p = 0.0900305732, 0.2447284711, 0.6652409558.
   Cross-entropy of label k: -log p_k = log S - k, log S = 2.4076059644:
   label 0 -> 2.4076059644, label 1 -> 1.4076059644, label 2 -> 0.4076059644;
   a batch of the three labels has mean log S - 1 = 1.4076059644. Only
   label 2 is the most probable class, so 1 of 3 is correct.
   The fused gradient is (p - onehot) / 3. A naive exp(1000) would be inf
   and every value NaN. */
TEST(softmax_large_logits)
{
    static const float logits[9] = {1000, 1001, 1002, 1000, 1001, 1002, 1000, 1001, 1002};
    static const int labels[3] = {0, 1, 2};
    static const double p[3] = {0.0900305732, 0.2447284711, 0.6652409558};
    static const double per_label[3] = {2.4076059644, 1.4076059644, 0.4076059644};
    double expected_p[9], expected_dz[9];
    cnn_model model;
    float loss = NAN;
    int correct = -1, n, k;
    for (n = 0; n < 3; n++)
        for (k = 0; k < 3; k++) {
            expected_p[n * 3 + k] = p[k];
            expected_dz[n * 3 + k] = (p[k] - (k == labels[n] ? 1.0 : 0.0)) / 3.0;
        }
    cnn_model_init(&model, 3, 1, 1, 1);
    cnn_add_softmax(&model);
    if (!build(&model, 3)) return;
    cnn_model_forward(&model, logits, 3, CNN_MODE_EVAL);
    CHECK_VALUES("softmax(1000, 1001, 1002)", cnn_model_output(&model), expected_p, 9, EXACT);
    CHECK(cnn_model_loss(&model, labels, &loss, &correct) == CNN_OK, "loss failed: %s", model.error.message);
    CHECK(isfinite(loss) && fabs(loss - 1.4076059644) <= EXACT, "mean loss %.9g, expected 1.4076059644", (double)loss);
    CHECK(correct == 1, "%d correct, expected 1", correct);
    cnn_model_zero_grad(&model);
    cnn_model_backward(&model, labels);
    CHECK_VALUES("fused gradient at 1000", model.activation_grads[0].data, expected_dz, 9, EXACT);
    for (k = 0; k < 3; k++) { /* one sample at a time */
        cnn_model_forward(&model, logits, 1, CNN_MODE_EVAL);
        cnn_model_loss(&model, &labels[k], &loss, NULL);
        CHECK(isfinite(loss) && fabs(loss - per_label[k]) <= EXACT, "loss of label %d is %.9g, expected %.10f", k,
              (double)loss, per_label[k]);
    }
    cnn_model_free(&model);
}

/* Logits {0, 200}: p = (e^-200, 1) / (1 + e^-200) and e^-200 = 1.4e-87 is
   0 in float, so p_0 rounds to 0 and log p_0 would be -inf. From the
   logits: loss = log(1 + e^-200) + 200 = 200 (to 1e-87). The gradient stays
   (p - y) / N: with label 0 and N = 1, (0 - 1, 1 - 0) = (-1, 1). With a
   second sample {0, 200} labelled 1 (loss log(1 + e^-200) = 0), N = 2:
   mean loss 100 and gradients (-0.5, 0.5) and (0, 0). */
TEST(softmax_huge_gap_stays_finite)
{
    static const float logits[4] = {0, 200, 0, 200};
    static const int labels[2] = {0, 1};
    static const double dz1[2] = {-1, 1};
    static const double dz2[4] = {-0.5, 0.5, 0, 0};
    cnn_model model;
    float loss = NAN;
    cnn_model_init(&model, 2, 1, 1, 1);
    cnn_add_softmax(&model);
    if (!build(&model, 2)) return;
    cnn_model_forward(&model, logits, 1, CNN_MODE_EVAL);
    CHECK(cnn_model_output(&model)[0] == 0.0f, "p_0 = %g: expected it to round to 0 (else the test proves nothing)",
          (double)cnn_model_output(&model)[0]);
    cnn_model_loss(&model, labels, &loss, NULL);
    CHECK(isfinite(loss) && fabs(loss - 200.0) <= 1e-4, "loss %.9g, expected 200", (double)loss);
    cnn_model_zero_grad(&model);
    cnn_model_backward(&model, labels);
    CHECK_VALUES("gap gradient, N = 1", model.activation_grads[0].data, dz1, 2, EXACT);

    cnn_model_forward(&model, logits, 2, CNN_MODE_EVAL);
    cnn_model_loss(&model, labels, &loss, NULL);
    CHECK(isfinite(loss) && fabs(loss - 100.0) <= 1e-4, "mean loss %.9g, expected 100", (double)loss);
    cnn_model_backward(&model, labels);
    CHECK_VALUES("gap gradient, N = 2", model.activation_grads[0].data, dz2, 4, EXACT);
    cnn_model_free(&model);
}

/* ---------------------------------------------------------------- activations */

/* Runs a one-layer activation model on 5 values, backward from dy. */
static int activation_run(cnn_model *model, cnn_layer_type type, const float *x, const float *dy)
{
    cnn_layer_desc desc;
    memset(&desc, 0, sizeof desc);
    desc.type = type;
    desc.alpha = 0.3f;
    cnn_model_init(model, 5, 1, 1, 1);
    cnn_model_add(model, &desc);
    if (!build(model, 1)) return 0;
    cnn_model_forward(model, x, 1, CNN_MODE_EVAL);
    cnn_model_backward_from(model, dy);
    return 1;
}

/* dy = (1, -2, 3, 0.5, 4) throughout, so dx = f'(x) * dy.
   ReLU on (-2, -0.5, 0, 0.5, 3): y = (0, 0, 0, 0.5, 3); f' = 0 at x <= 0
   (PyTorch's choice at 0 too): dx = (0, 0, 0, 0.5, 4).
   LeakyReLU 0.3: y = (-0.6, -0.15, 0, 0.5, 3); f' = 0.3 at x <= 0:
   dx = (0.3, -0.6, 0.9, 0.5, 4). */
TEST(relu_and_leaky_relu_by_hand)
{
    static const float x[5] = {-2, -0.5f, 0, 0.5f, 3}, dy[5] = {1, -2, 3, 0.5f, 4};
    static const double relu_y[5] = {0, 0, 0, 0.5, 3}, relu_dx[5] = {0, 0, 0, 0.5, 4};
    static const double leaky_y[5] = {-0.6, -0.15, 0, 0.5, 3}, leaky_dx[5] = {0.3, -0.6, 0.9, 0.5, 4};
    cnn_model model;
    if (activation_run(&model, CNN_LAYER_RELU, x, dy)) {
        CHECK_VALUES("relu y", cnn_model_output(&model), relu_y, 5, EXACT);
        CHECK_VALUES("relu dx", model.activation_grads[0].data, relu_dx, 5, EXACT);
    }
    cnn_model_free(&model);
    if (activation_run(&model, CNN_LAYER_LEAKY_RELU, x, dy)) {
        CHECK(model.layers[0].desc.alpha == 0.3f, "alpha %g", (double)model.layers[0].desc.alpha);
        CHECK_VALUES("leaky relu y", cnn_model_output(&model), leaky_y, 5, EXACT);
        CHECK_VALUES("leaky relu dx", model.activation_grads[0].data, leaky_dx, 5, EXACT);
    }
    cnn_model_free(&model);
}

/* Sigmoid on (-100, -2, 0, 2, 100):
   s(0) = 1/2, s'(0) = 1/4; s(2) = 1 / (1 + e^-2) = 1 / 1.1353352832
   = 0.8807970780, s(-2) = 1 - s(2) = 0.1192029220, s'(+-2) = s (1 - s)
   = 0.1049935854; s(100) = 1 in float (e^-100 = 3.7e-44 vanishes next to 1),
   s'(100) = 0; s(-100) = e^-100 = 3.7e-44, tiny but finite and >= 0, and
   a naive 1 / (1 + e^100) must not produce inf or NaN on the way.
   dx = s' * dy = (~0, -0.2099871708, 0.75, 0.0524967927, 0). */
TEST(sigmoid_by_hand)
{
    static const float x[5] = {-100, -2, 0, 2, 100}, dy[5] = {1, -2, 3, 0.5f, 4};
    static const double y[5] = {0, 0.1192029220, 0.5, 0.8807970780, 1};
    static const double dx[5] = {0, -0.2099871708, 0.75, 0.0524967927, 0};
    cnn_model model;
    if (activation_run(&model, CNN_LAYER_SIGMOID, x, dy)) {
        const float *out = cnn_model_output(&model), *grad = model.activation_grads[0].data;
        CHECK_VALUES("sigmoid y", out, y, 5, EXACT);
        CHECK_VALUES("sigmoid dx", grad, dx, 5, EXACT);
        CHECK(out[2] == 0.5f, "sigmoid(0) = %.9g, expected exactly 0.5", (double)out[2]);
        CHECK(isfinite(out[0]) && out[0] >= 0.0f && out[0] < 1e-30f, "sigmoid(-100) = %g", (double)out[0]);
        CHECK(isfinite(out[4]) && out[4] == 1.0f, "sigmoid(100) = %.9g", (double)out[4]);
        CHECK(isfinite(grad[0]) && isfinite(grad[4]), "sigmoid gradients at +-100: %g %g", (double)grad[0], (double)grad[4]);
    }
    cnn_model_free(&model);
}

/* tanh on (-1, 0, 0.5, 20, -20): tanh(-1) = -(e^2 - 1) / (e^2 + 1)
   = -6.3890560989 / 8.3890560989 = -0.7615941560; tanh(0.5) = (e - 1) / (e + 1)
   = 1.7182818285 / 3.7182818285 = 0.4621171573; tanh(+-20) = +-1 in float.
   tanh' = 1 - y^2: 0.4199743416, 1, 0.7864477330, 0, 0;
   dx = tanh' * dy = (0.4199743416, -2, 2.3593431989, 0, 0). */
TEST(tanh_by_hand)
{
    static const float x[5] = {-1, 0, 0.5f, 20, -20}, dy[5] = {1, -2, 3, 0.5f, 4};
    static const double y[5] = {-0.7615941560, 0, 0.4621171573, 1, -1};
    static const double dx[5] = {0.4199743416, -2, 2.3593431989, 0, 0};
    cnn_model model;
    if (activation_run(&model, CNN_LAYER_TANH, x, dy)) {
        CHECK_VALUES("tanh y", cnn_model_output(&model), y, 5, EXACT);
        CHECK_VALUES("tanh dx", model.activation_grads[0].data, dx, 5, EXACT);
    }
    cnn_model_free(&model);
}

/* ---------------------------------------------------------------- dropout */

/* Dropout 0.2 on 10000 values in training: the fraction dropped is
   Binomial(10000, 0.2) / 10000, mean 0.2, sd 0.004, so 0.17..0.23 is a
   7.5 sd band. Kept values are x / (1 - 0.2) = 1.25 x (1/0.8 = 1.25 is
   exact in float, so this is exact). Backward: dx = dy * mask, the same
   positions. Eval mode: identity. Same seed: same mask; different seed or
   the next pass: a different one. */
TEST(dropout_by_hand)
{
    enum { COUNT = 10000 };
    static float x[COUNT], dy[COUNT], first[COUNT];
    cnn_model model, twin, other;
    const float *y;
    int i, dropped = 0, wrong_keep = 0, wrong_grad = 0, differ = 0;
    double fraction;
    for (i = 0; i < COUNT; i++) {
        x[i] = 1.0f + 0.25f * (float)(i % 7);
        dy[i] = (float)(i % 5) - 2.5f;
    }
    cnn_model_init(&model, 1, 100, 100, 5);
    cnn_add_dropout(&model, 0.2f);
    cnn_model_init(&twin, 1, 100, 100, 5);
    cnn_add_dropout(&twin, 0.2f);
    cnn_model_init(&other, 1, 100, 100, 6);
    cnn_add_dropout(&other, 0.2f);
    if (!build(&model, 1) || !build(&twin, 1) || !build(&other, 1)) goto done;

    cnn_model_forward(&model, x, 1, CNN_MODE_TRAIN);
    y = cnn_model_output(&model);
    cnn_model_backward_from(&model, dy);
    for (i = 0; i < COUNT; i++) {
        if (y[i] == 0.0f) {
            dropped++;
            if (model.activation_grads[0].data[i] != 0.0f) wrong_grad++;
        } else {
            if (fabs((double)y[i] - x[i] / (1.0 - 0.2)) > 1e-6 * fabs((double)y[i])) wrong_keep++;
            if (fabs((double)model.activation_grads[0].data[i] - dy[i] / (1.0 - 0.2)) > 1e-6) wrong_grad++;
        }
    }
    fraction = dropped / (double)COUNT;
    CHECK(fraction >= 0.17 && fraction <= 0.23, "dropped fraction %.4f, expected 0.2 +- 0.03", fraction);
    CHECK(wrong_keep == 0, "%d kept values are not x / (1 - rate)", wrong_keep);
    CHECK(wrong_grad == 0, "%d gradients are not dy * mask", wrong_grad);
    memcpy(first, y, sizeof first);

    cnn_model_forward(&twin, x, 1, CNN_MODE_TRAIN);
    CHECK(memcmp(cnn_model_output(&twin), first, sizeof first) == 0, "the same seed gave a different mask");
    cnn_model_forward(&other, x, 1, CNN_MODE_TRAIN);
    for (i = 0, differ = 0; i < COUNT; i++) differ += cnn_model_output(&other)[i] != first[i];
    /* two independent masks differ where exactly one drops: 2 * 0.2 * 0.8 = 32% */
    CHECK(differ > 2500, "another seed changed only %d of %d values", differ, COUNT);
    cnn_model_forward(&model, x, 1, CNN_MODE_TRAIN);
    for (i = 0, differ = 0; i < COUNT; i++) differ += cnn_model_output(&model)[i] != first[i];
    CHECK(differ > 2500, "the next pass reused the mask: only %d of %d values changed", differ, COUNT);

    cnn_model_forward(&model, x, 1, CNN_MODE_EVAL);
    CHECK(memcmp(cnn_model_output(&model), x, sizeof x) == 0, "dropout in eval mode is not the identity");
    cnn_model_backward_from(&model, dy);
    CHECK(memcmp(model.activation_grads[0].data, dy, sizeof dy) == 0, "dropout backward in eval mode is not the identity");
done:
    cnn_model_free(&model);
    cnn_model_free(&twin);
    cnn_model_free(&other);
}

/* ---------------------------------------------------------------- dense */

/* Dense 3 -> 2 with w stored (IN, OUT), Keras style: w[i][o] at i * 2 + o.
       w = 1 2      b = (0.5, -1)
           3 4
           5 6
   x0 = (1, -1, 2): y0 = 0.5 + 1 - 3 + 10 = 8.5,  y1 = -1 + 2 - 4 + 12 = 9
   x1 = (0, 2, -1): y0 = 0.5 + 0 + 6 - 5 = 1.5,   y1 = -1 + 0 + 8 - 6 = 1
   (read as PyTorch's (OUT, IN) the same numbers would give 5.5 and 10.)
   Backward with dy = (1, 0) for x0 and (0, 1) for x1:
   db = (1, 1); dw = x^T dy: column 0 is x0, column 1 is x1:
   dw = 1 0 / -1 2 / 2 -1;  dx = dy w^T: dx0 = w[:,0] = (1, 3, 5),
   dx1 = w[:,1] = (2, 4, 6). */
TEST(dense_by_hand)
{
    static const float x[6] = {1, -1, 2, 0, 2, -1}, dy[4] = {1, 0, 0, 1};
    static const float weight[6] = {1, 2, 3, 4, 5, 6};
    static const double expected_y[4] = {8.5, 9, 1.5, 1};
    static const double expected_dw[6] = {1, 0, -1, 2, 2, -1}, expected_db[2] = {1, 1};
    static const double expected_dx[6] = {1, 3, 5, 2, 4, 6};
    cnn_model model;
    cnn_layer *dense;
    cnn_model_init(&model, 3, 1, 1, 1);
    cnn_add_dense(&model, 2);
    if (!build(&model, 2)) return;
    dense = &model.layers[0];
    memcpy(dense->weight, weight, sizeof weight);
    dense->bias[0] = 0.5f;
    dense->bias[1] = -1.0f;
    cnn_model_forward(&model, x, 2, CNN_MODE_EVAL);
    CHECK_VALUES("dense y", cnn_model_output(&model), expected_y, 4, EXACT);
    cnn_model_zero_grad(&model);
    cnn_model_backward_from(&model, dy);
    CHECK_VALUES("dense dw", dense->weight_grad, expected_dw, 6, EXACT);
    CHECK_VALUES("dense db", dense->bias_grad, expected_db, 2, EXACT);
    CHECK_VALUES("dense dx", model.activation_grads[0].data, expected_dx, 6, EXACT);
    cnn_model_free(&model);
}

/* Dense forward reads w in place for batches of up to 6 samples (one panel
   of the multiply) and packs it for larger ones; both must add the same
   products in the same order. 37 -> 40 outputs: two whole panels of 16
   columns and a last one of 8. Every batch size from 1 to 9 must give each
   sample's outputs bit for bit as a batch of 9 does, and those must match
   the sum in double to 1e-6 relative. */
TEST(dense_forward_same_for_every_batch_size)
{
    enum { IN = 37, OUT = 40, MOST = 9 };
    float x[MOST * IN], all[MOST * OUT];
    cnn_model model;
    cnn_layer *dense;
    cnn_rng rng;
    int batch, n, o, i, exact = 1;
    double worst = 0.0;
    cnn_rng_seed(&rng, 7);
    for (i = 0; i < MOST * IN; i++) x[i] = cnn_rng_uniform(&rng) * 2.0f - 1.0f;
    cnn_model_init(&model, IN, 1, 1, 3);
    cnn_add_dense(&model, OUT);
    if (!build(&model, MOST)) return;
    dense = &model.layers[0];
    for (o = 0; o < OUT; o++) dense->bias[o] = 0.01f * (float)o;
    cnn_model_forward(&model, x, MOST, CNN_MODE_EVAL);
    memcpy(all, cnn_model_output(&model), sizeof all);
    for (n = 0; n < MOST; n++)
        for (o = 0; o < OUT; o++) {
            double sum = dense->bias[o], error;
            for (i = 0; i < IN; i++) sum += (double)x[n * IN + i] * dense->weight[i * OUT + o];
            error = fabs(all[n * OUT + o] - sum) / (fabs(sum) > 1.0 ? fabs(sum) : 1.0);
            if (error > worst) worst = error;
        }
    CHECK(worst < 1e-6, "batch of %d against double: worst relative error %.3g", MOST, worst);
    for (batch = 1; batch < MOST; batch++) {
        cnn_model_forward(&model, x, batch, CNN_MODE_EVAL);
        if (memcmp(cnn_model_output(&model), all, (size_t)batch * OUT * sizeof(float)) != 0) exact = 0;
        CHECK(exact, "a batch of %d differs from the same samples in a batch of %d", batch, MOST);
        if (!exact) break;
    }
    cnn_model_free(&model);
}

/* ---------------------------------------------------------------- initialisers */

static void moments(const float *w, size_t n, double *mean, double *sd, double *max_abs)
{
    double sum = 0.0, sum2 = 0.0;
    size_t i;
    *max_abs = 0.0;
    for (i = 0; i < n; i++) {
        sum += w[i];
        if (fabs(w[i]) > *max_abs) *max_abs = fabs(w[i]);
    }
    *mean = sum / n;
    for (i = 0; i < n; i++) sum2 += (w[i] - *mean) * (w[i] - *mean);
    *sd = sqrt(sum2 / n);
}

static int all_zero(const float *v, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) if (v[i] != 0.0f) return 0;
    return 1;
}

/* Glorot uniform (the default) draws U(-a, a), a = sqrt(6 / (fan_in + fan_out)).
   Dense 300 -> 200: a = sqrt(6 / 500) = 0.1095445115, variance a^2 / 3 =
   0.004 (sd 0.0632455532). With 60000 weights the sample sd is within
   0.2% (1 sd) of that, so we accept 3%; the largest |w| of 60000 is within
   a / 60000 of a, so it must lie in (0.99 a, a].
   Conv 8 filters 3x3 on 4 channels: fan_in = 4 * 9 = 36, fan_out = 8 * 9 =
   72 (Keras counts the kernel area in both), a = sqrt(6 / 108) = 0.2357022604;
   of 288 weights the largest |w| is above 0.9 a unless all 288 fall inside,
   probability 0.9^288 = 6e-14. He uniform, a = sqrt(6 / fan_in), on a
   second conv 8 -> 8 channels: fan_in = 72, a = sqrt(6 / 72) = 0.2886751346
   (576 weights: the largest |w| is above 0.9 a except with probability
   0.9^576). Biases start at zero. */
TEST(glorot_and_he_uniform_bounds)
{
    cnn_model model;
    cnn_layer_desc desc;
    double mean, sd, max_abs, a;
    cnn_model_init(&model, 300, 1, 1, 11);
    cnn_add_dense(&model, 200);
    if (build(&model, 1)) {
        cnn_layer *dense = &model.layers[0];
        a = 0.1095445115;
        moments(dense->weight, dense->weight_count, &mean, &sd, &max_abs);
        CHECK(max_abs <= a && max_abs > 0.99 * a, "dense Glorot: max |w| %.6g, expected in (0.99, 1] x %.6g", max_abs, a);
        CHECK(fabs(sd - 0.0632455532) <= 0.03 * 0.0632455532, "dense Glorot: sd %.6g, expected 0.0632455532 +- 3%%", sd);
        CHECK(fabs(mean) <= 0.02 * a, "dense Glorot: mean %.3g, expected ~0 (sd of the mean 0.00026)", mean);
        CHECK(all_zero(dense->bias, dense->bias_count), "dense biases are not zero");
    }
    cnn_model_free(&model);

    cnn_model_init(&model, 4, 6, 6, 12);
    cnn_add_conv2d(&model, 8, 3, 1, 1);
    memset(&desc, 0, sizeof desc);
    desc.type = CNN_LAYER_CONV2D;
    desc.units = 8;
    desc.kernel = 3;
    desc.padding = 1;
    desc.init = CNN_INIT_HE_UNIFORM;
    cnn_model_add(&model, &desc);
    if (build(&model, 1)) {
        cnn_layer *conv = &model.layers[0], *he = &model.layers[1];
        a = 0.2357022604;
        moments(conv->weight, conv->weight_count, &mean, &sd, &max_abs);
        CHECK(max_abs <= a && max_abs > 0.9 * a, "conv Glorot: max |w| %.6g, expected in (0.9, 1] x %.6g", max_abs, a);
        CHECK(all_zero(conv->bias, conv->bias_count), "conv biases are not zero");
        a = 0.2886751346;
        moments(he->weight, he->weight_count, &mean, &sd, &max_abs);
        CHECK(max_abs <= a && max_abs > 0.9 * a, "conv He uniform: max |w| %.6g, expected in (0.9, 1] x %.6g", max_abs, a);
    }
    cnn_model_free(&model);
}

/* He normal: N(0, 2 / fan_in). Dense 1000 -> 500: sd = sqrt(2 / 1000) =
   0.0447213595; with 500000 weights the sample sd has a relative sd of
   1 / sqrt(2 * 500000) = 0.1%, so we accept 1%; the mean's sd is
   0.0447 / sqrt(500000) = 6.3e-5, we accept 5e-4. A conv 16 filters 5x5
   on 8 channels has fan_in = 200, sd = 0.1; of its 3200 weights the sample
   sd is within 1.25% (1 sd), we accept 6%. */
TEST(he_normal_spread)
{
    cnn_model model;
    cnn_layer_desc desc;
    double mean, sd, max_abs;
    memset(&desc, 0, sizeof desc);
    desc.type = CNN_LAYER_DENSE;
    desc.units = 500;
    desc.init = CNN_INIT_HE_NORMAL;
    cnn_model_init(&model, 1000, 1, 1, 13);
    cnn_model_add(&model, &desc);
    if (build(&model, 1)) {
        moments(model.layers[0].weight, model.layers[0].weight_count, &mean, &sd, &max_abs);
        CHECK(fabs(sd - 0.0447213595) <= 0.01 * 0.0447213595, "dense He normal: sd %.6g, expected 0.0447213595 +- 1%%", sd);
        CHECK(fabs(mean) <= 5e-4, "dense He normal: mean %.3g", mean);
        CHECK(all_zero(model.layers[0].bias, model.layers[0].bias_count), "biases are not zero");
    }
    cnn_model_free(&model);

    memset(&desc, 0, sizeof desc);
    desc.type = CNN_LAYER_CONV2D;
    desc.units = 16;
    desc.kernel = 5;
    desc.init = CNN_INIT_HE_NORMAL;
    cnn_model_init(&model, 8, 9, 9, 14);
    cnn_model_add(&model, &desc);
    if (build(&model, 1)) {
        moments(model.layers[0].weight, model.layers[0].weight_count, &mean, &sd, &max_abs);
        CHECK(fabs(sd - 0.1) <= 0.06 * 0.1, "conv He normal: sd %.6g, expected 0.1 +- 6%%", sd);
    }
    cnn_model_free(&model);
}

/* The same seed gives bit-identical weights; another seed different ones
   (all but a handful: two independent uniform floats rarely coincide). */
TEST(init_is_reproducible)
{
    cnn_model a, b, c;
    size_t i, same = 0;
    cnn_model_init(&a, 2, 8, 8, 42);
    cnn_model_init(&b, 2, 8, 8, 42);
    cnn_model_init(&c, 2, 8, 8, 43);
    cnn_add_conv2d(&a, 4, 3, 1, 1); cnn_add_flatten(&a); cnn_add_dense(&a, 10);
    cnn_add_conv2d(&b, 4, 3, 1, 1); cnn_add_flatten(&b); cnn_add_dense(&b, 10);
    cnn_add_conv2d(&c, 4, 3, 1, 1); cnn_add_flatten(&c); cnn_add_dense(&c, 10);
    if (build(&a, 1) && build(&b, 1) && build(&c, 1)) {
        CHECK(a.param_count == c.param_count && a.param_count == 72 + 4 + 2560 + 10, "param count %lu",
              (unsigned long)a.param_count);
        CHECK(memcmp(a.params, b.params, a.param_count * sizeof(float)) == 0, "seed 42 twice gave different weights");
        for (i = 0; i < a.param_count; i++) same += a.params[i] == c.params[i];
        /* the 14 biases are zero in both */
        CHECK(same <= 14 + 5, "seeds 42 and 43 agree on %lu of %lu parameters", (unsigned long)same,
              (unsigned long)a.param_count);
    }
    cnn_model_free(&a);
    cnn_model_free(&b);
    cnn_model_free(&c);
}

/* ---------------------------------------------------------------- optimisers */

/* A dense 1 -> 1 model has two parameters, w and b; we set them and their
   gradients by hand and step. */
static int two_parameters(cnn_model *model)
{
    cnn_model_init(model, 1, 1, 1, 1);
    cnn_add_dense(model, 1);
    if (!build(model, 1)) return 0;
    CHECK(model->param_count == 2, "param_count %lu", (unsigned long)model->param_count);
    return model->param_count == 2;
}

/* Adam, lr 1e-3, b1 0.9, b2 0.999, eps 1e-7, bias-corrected:
   m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2,
   p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
   w = 1 with gradients 0.5, -0.25, 0.1:
   t=1: m = 0.05, v = 0.00025; m^ = 0.05 / 0.1 = 0.5, v^ = 0.00025 / 0.001
        = 0.25, sqrt 0.5; step 1e-3 * 0.5 / (0.5 + 1e-7) = 0.0009999998
        -> w = 0.9990000002
   t=2: m = 0.045 - 0.025 = 0.02, v = 0.00024975 + 0.0000625 = 0.00031225;
        m^ = 0.02 / 0.19 = 0.1052631579, v^ = 0.00031225 / 0.001999
        = 0.1562031016, sqrt 0.3952253807; step 1e-3 * 0.1052631579 / 0.3952253807
        = 1e-3 * 0.2663370397 = 0.0002663370 -> w = 0.9987336632
   t=3: m = 0.018 + 0.01 = 0.028, v = 0.00031193775 + 0.00001 = 0.00032193775;
        m^ = 0.028 / 0.271 = 0.1033210332, v^ = 0.00032193775 / 0.002997001
        = 0.1074199675, sqrt 0.3277498551; step 1e-3 * 0.3152434 = 0.0003152435
        -> w = 0.9984184198
   b = -0.5 with the constant gradient -2: m^ = -2 and v^ = 4 at every step,
   so b moves by lr * 2 / (2 + 1e-7) = 0.001 each time: -0.499, -0.498, -0.497.
   Float keeps ~6e-8 near 1 and m, v carry relative errors ~1e-7, so 2e-7. */
TEST(adam_by_hand)
{
    static const float grads[3] = {0.5f, -0.25f, 0.1f};
    static const double w_after[3] = {0.9990000002, 0.9987336632, 0.9984184198};
    static const double b_after[3] = {-0.499, -0.498, -0.497};
    cnn_model model;
    cnn_optimizer adam;
    cnn_optimizer_desc desc;
    int t;
    if (!two_parameters(&model)) { cnn_model_free(&model); return; }
    memset(&desc, 0, sizeof desc);
    desc.type = CNN_OPTIMIZER_ADAM;
    desc.learning_rate = 1e-3f;
    desc.beta1 = 0.9f;
    desc.beta2 = 0.999f;
    desc.epsilon = 1e-7f;
    CHECK(cnn_optimizer_init(&adam, &model, &desc) == CNN_OK, "init: %s", model.error.message);
    model.params[0] = 1.0f;
    model.params[1] = -0.5f;
    for (t = 0; t < 3; t++) {
        model.grads[0] = grads[t];
        model.grads[1] = -2.0f;
        cnn_optimizer_step(&adam, &model);
        CHECK(fabs(model.params[0] - w_after[t]) <= 2e-7, "Adam step %d: w = %.10f, expected %.10f", t + 1,
              (double)model.params[0], w_after[t]);
        CHECK(fabs(model.params[1] - b_after[t]) <= 2e-7, "Adam step %d: b = %.10f, expected %.10f", t + 1,
              (double)model.params[1], b_after[t]);
    }
    cnn_optimizer_free(&adam);
    cnn_model_free(&model);
}

/* The first Adam step moves every parameter by lr * g / (|g| + eps) =
   lr * sign(g) * (1 - eps / |g|): almost exactly lr against the gradient,
   whatever its size (1e-4 short of it at |g| = 1e-3). From 0, for
   gradients 1e-3, 5, -100, 0.3, -0.02, 7 (a dense 2 -> 2 has 6 params). */
TEST(adam_first_step_is_lr_sign)
{
    static const float g[6] = {1e-3f, 5.0f, -100.0f, 0.3f, -0.02f, 7.0f};
    cnn_model model;
    cnn_optimizer adam;
    int i;
    cnn_model_init(&model, 2, 1, 1, 1);
    cnn_add_dense(&model, 2);
    if (!build(&model, 1)) return;
    cnn_optimizer_init(&adam, &model, NULL); /* NULL: Adam, lr 1e-3, 0.9, 0.999, 1e-7 */
    for (i = 0; i < 6; i++) {
        model.params[i] = 0.0f;
        model.grads[i] = g[i];
    }
    cnn_optimizer_step(&adam, &model);
    for (i = 0; i < 6; i++) {
        double sign = g[i] > 0 ? 1.0 : -1.0;
        double exact = -1e-3 * g[i] / (fabs(g[i]) + 1e-7);
        CHECK(fabs(model.params[i] + 1e-3 * sign) <= 1e-3 * 1.5e-4, "param %d moved by %.9g for g = %g, expected ~%g", i,
              (double)model.params[i], (double)g[i], -1e-3 * sign);
        CHECK(fabs(model.params[i] - exact) <= 1e-9, "param %d = %.12g, expected %.12g", i, (double)model.params[i], exact);
    }
    cnn_optimizer_free(&adam);
    cnn_model_free(&model);
}

/* SGD with momentum 0.9, lr 0.1: v = 0.9 v + g; p -= 0.1 v. p = 1,
   gradients 1, 0.5, -2:
     v = 1,                  p = 1 - 0.1      = 0.9
     v = 0.9 + 0.5 = 1.4,    p = 0.9 - 0.14   = 0.76
     v = 1.26 - 2 = -0.74,   p = 0.76 + 0.074 = 0.834
   Plain SGD (momentum 0) on b = 1 with gradient 0.5 twice: 0.95, 0.9 (with
   momentum it would be 0.855 the second time). */
TEST(sgd_momentum_by_hand)
{
    static const float grads[3] = {1.0f, 0.5f, -2.0f};
    static const double p_after[3] = {0.9, 0.76, 0.834};
    cnn_model model;
    cnn_optimizer sgd;
    cnn_optimizer_desc desc;
    int t;
    if (!two_parameters(&model)) { cnn_model_free(&model); return; }
    memset(&desc, 0, sizeof desc);
    desc.type = CNN_OPTIMIZER_SGD;
    desc.learning_rate = 0.1f;
    desc.momentum = 0.9f;
    cnn_optimizer_init(&sgd, &model, &desc);
    model.params[0] = 1.0f;
    model.params[1] = 0.0f;
    for (t = 0; t < 3; t++) {
        model.grads[0] = grads[t];
        model.grads[1] = 0.0f;
        cnn_optimizer_step(&sgd, &model);
        CHECK(fabs(model.params[0] - p_after[t]) <= 1e-6, "SGD momentum step %d: p = %.9f, expected %.9f", t + 1,
              (double)model.params[0], p_after[t]);
    }
    CHECK(model.params[1] == 0.0f, "a parameter with zero gradient moved to %g", (double)model.params[1]);
    cnn_optimizer_free(&sgd);

    desc.momentum = 0.0f;
    cnn_optimizer_init(&sgd, &model, &desc);
    model.params[1] = 1.0f;
    for (t = 0; t < 2; t++) {
        model.grads[0] = 0.0f;
        model.grads[1] = 0.5f;
        cnn_optimizer_step(&sgd, &model);
        CHECK(fabs(model.params[1] - (t == 0 ? 0.95 : 0.9)) <= 1e-6, "plain SGD step %d: p = %.9f, expected %.2f", t + 1,
              (double)model.params[1], t == 0 ? 0.95 : 0.9);
    }
    cnn_optimizer_free(&sgd);
    cnn_model_free(&model);
}

int main(void)
{
    RUN(conv2d_stride_padding_by_hand);
    RUN(conv2d_floors_untiled_stride);
    RUN(conv2d_two_channels_by_hand);
    RUN(max_pool_forward_and_routing);
    RUN(max_pool_ties_go_to_first_maximum);
    RUN(max_pool_overlapping_windows_add_up);
    RUN(avg_pool_values_and_gradient);
    RUN(max_pool_padding_never_wins);
    RUN(avg_pool_padding_and_ceil_mode);
    RUN(global_avg_pool_by_hand);
    RUN(batch_norm_by_hand);
    RUN(residual_by_hand);
    RUN(softmax_large_logits);
    RUN(softmax_huge_gap_stays_finite);
    RUN(relu_and_leaky_relu_by_hand);
    RUN(sigmoid_by_hand);
    RUN(tanh_by_hand);
    RUN(dropout_by_hand);
    RUN(dense_by_hand);
    RUN(dense_forward_same_for_every_batch_size);
    RUN(glorot_and_he_uniform_bounds);
    RUN(he_normal_spread);
    RUN(init_is_reproducible);
    RUN(adam_by_hand);
    RUN(adam_first_step_is_lr_sign);
    RUN(sgd_momentum_by_hand);
    return test_report();
}
