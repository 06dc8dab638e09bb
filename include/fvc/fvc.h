#pragma once

/// Everything public in one include.
#include "fvc/augmentation.h"
#include "fvc/callback.h"
#include "fvc/dataset.h"
#include "fvc/emotion.h"
#include "fvc/emotion_head.h"
#include "fvc/emotion_net.h"
#include "fvc/error.h"
#include "fvc/evaluation.h"
#include "fvc/keras_network.h"
#include "fvc/loader.h"
#include "fvc/model_io.h"
#include "fvc/preprocessing.h"
#include "fvc/recipe.h"
#include "fvc/runtime.h"
#include "fvc/trainer.h"
#include "fvc/vgg_face_backbone.h"
